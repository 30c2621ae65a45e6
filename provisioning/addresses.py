"""Dual-stack tunnel address pools: allocation without reuse, and a quarantine on release."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning.driver import Driver
from provisioning.errors import PoolExhausted
from provisioning.events import Event
from provisioning.schema import address_pools, addresses

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Offset 0 is the network address and offset 1 the gateway's own tunnel address.
FIRST_CLIENT_OFFSET = 2
_MAX_OFFSETS = 1 << 62  # fits a signed BIGINT; an IPv6 /64 never runs out anyway


def end_offset(network: Network) -> int:
    """One past the last offset a client may get (IPv4 keeps the broadcast address)."""
    size = network.num_addresses - (1 if network.version == 4 else 0)
    return min(size, _MAX_OFFSETS)


def client_capacity(network: Network) -> int:
    return max(0, end_offset(network) - FIRST_CLIENT_OFFSET)


def address_at(network: Network, offset: int) -> Address:
    if not FIRST_CLIENT_OFFSET <= offset < end_offset(network):
        raise ValueError(f"offset {offset} outside the client range of {network}")
    return network.network_address + offset


def gateway_interface(network: Network) -> str:
    """The gateway's own address in the pool, with the pool's prefix: '10.100.0.1/16'."""
    return f"{network.network_address + 1}/{network.prefixlen}"


def host_prefix(address: str) -> str:
    """'10.0.0.2' → '10.0.0.2/32', 'fd00::2' → 'fd00::2/128' (allowed-ips and Address lines)."""
    ip = ipaddress.ip_address(address)
    return f"{ip}/{ip.max_prefixlen}"


async def ensure_pools(conn: AsyncConnection, networks: Sequence[Network]) -> None:
    existing = set((await conn.scalars(select(address_pools.c.cidr))).all())
    missing = [str(n) for n in networks if str(n) not in existing]
    if not missing:
        return
    # ON CONFLICT: another process starting at the same moment may add the pool first.
    insert_pool = (
        pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    )(address_pools).on_conflict_do_nothing(index_elements=[address_pools.c.cidr])
    await conn.execute(
        insert_pool, [{"cidr": cidr, "next_offset": FIRST_CLIENT_OFFSET} for cidr in missing]
    )


# Built once and executed with parameters (twice per provisioned peer, one per pool):
# saves SQLAlchemy's per-call statement construction and cache-key generation.
_TAKE_NEXT_OFFSET = (
    update(address_pools)
    .where(
        address_pools.c.cidr == bindparam("pool_cidr"),
        address_pools.c.next_offset < bindparam("pool_end"),
    )
    .values(next_offset=address_pools.c.next_offset + 1)
    .returning(address_pools.c.next_offset - 1)
)
_INSERT_ADDRESS = insert(addresses)

# k never-used offsets at once (a group of provisioned peers): one statement per pool,
# as text on the driver (see provisioning.driver).
_BULK_TAKE_OFFSETS = (
    "UPDATE address_pools SET next_offset = next_offset + ? WHERE cidr = ?"
    " AND next_offset + ? <= ? RETURNING next_offset")
_BULK_INSERT_ADDRESS = (
    'INSERT INTO addresses (pool, "offset", address, peer_id, released_at)'
    " VALUES (?, ?, ?, ?, NULL)")


async def allocate_fresh(
    db: Driver, network: Network, peer_ids: Sequence[str]
) -> list[str] | None:
    """One never-used address for each peer, in order; None if fewer than that are left
    (the caller then allocates one by one, recycling released addresses)."""
    cidr, k = str(network), len(peer_ids)
    end = await db.fetchval(_BULK_TAKE_OFFSETS, (k, cidr, k, end_offset(network)))
    if end is None:
        return None
    first = int(end) - k
    base = network.network_address
    taken = [str(base + (first + i)) for i in range(k)]
    await db.executemany(_BULK_INSERT_ADDRESS, [
        (cidr, first + i, address, peer_id)
        for i, (address, peer_id) in enumerate(zip(taken, peer_ids, strict=True))])
    return taken


async def allocate_address(
    conn: AsyncConnection,
    network: Network,
    peer_id: str,
    *,
    now: datetime,
    quarantine: timedelta,
) -> str:
    """Hand out a never-used address, else the longest-released one past its quarantine."""
    cidr = str(network)
    # The UPDATE takes the pool row's write lock (PostgreSQL) or runs under SQLite's
    # single writer, so two transactions can never read the same offset.
    offset = await conn.scalar(
        _TAKE_NEXT_OFFSET, {"pool_cidr": cidr, "pool_end": end_offset(network)}
    )
    if offset is not None:
        address = str(address_at(network, int(offset)))
        await conn.execute(
            _INSERT_ADDRESS,
            {"pool": cidr, "offset": int(offset), "address": address, "peer_id": peer_id,
             "released_at": None},
        )
        return address
    candidate = (
        await conn.execute(
            select(addresses.c.offset, addresses.c.address)
            .where(
                addresses.c.pool == cidr,
                addresses.c.peer_id.is_(None),
                addresses.c.released_at <= now - quarantine,
            )
            .order_by(addresses.c.released_at, addresses.c.offset)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
    ).first()
    if candidate is not None:
        claimed = await conn.execute(
            update(addresses)
            .where(
                addresses.c.pool == cidr,
                addresses.c.offset == candidate.offset,
                addresses.c.peer_id.is_(None),
            )
            .values(peer_id=peer_id, released_at=None)
        )
        if claimed.rowcount == 1:
            return str(candidate.address)
    in_quarantine = await conn.scalar(
        select(addresses.c.released_at)
        .where(addresses.c.pool == cidr, addresses.c.peer_id.is_(None))
        .order_by(addresses.c.released_at)
        .limit(1)
    )
    hint = (
        "; the next released address leaves quarantine at "
        f"{in_quarantine + quarantine:%Y-%m-%dT%H:%M:%SZ}"
        if in_quarantine is not None
        else ""
    )
    raise PoolExhausted(
        f"address pool {cidr} has no free address (capacity {client_capacity(network)}){hint}; "
        "ask the provider to add a larger pool",
        pool=cidr,
    )


async def release_addresses(
    conn: AsyncConnection, peer_id: str, *, tenant_id: str, now: datetime
) -> tuple[Event, ...]:
    rows = (
        await conn.execute(select(addresses.c.address).where(addresses.c.peer_id == peer_id))
    ).all()
    if not rows:
        return ()
    await conn.execute(
        update(addresses)
        .where(addresses.c.peer_id == peer_id)
        .values(peer_id=None, released_at=now)
    )
    return tuple(
        Event(
            "address.released", {"address": r.address, "peer_id": peer_id, "tenant_id": tenant_id}
        )
        for r in rows
    )


async def addresses_of(conn: AsyncConnection, peer_ids: Sequence[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {p: [] for p in peer_ids}
    if not peer_ids:
        return found
    rows = (
        await conn.execute(
            select(addresses.c.peer_id, addresses.c.address)
            .where(addresses.c.peer_id.in_(list(peer_ids)))
            .order_by(addresses.c.pool)
        )
    ).all()
    for row in rows:
        found[row.peer_id].append(row.address)
    for addrs in found.values():
        addrs.sort(key=lambda a: ":" in a)  # IPv4 first; no parse (10,000 peers: ~0.2 s)
    return found
