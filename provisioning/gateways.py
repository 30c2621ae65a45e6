"""Gateways (WireGuard hosts): registration, retirement, pools that never overlap, and the
per-gateway revision that tells agents their desired state changed."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning import addresses, ids, validation
from provisioning.addresses import Network
from provisioning.driver import Driver
from provisioning.errors import GatewayUnavailable, InvalidInput, NotFound, PoolOverlap
from provisioning.events import Event, Outcome
from provisioning.schema import gateways, peers, public_keys, tenants

_HOSTPORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):(\d{1,5})$")
# Candidate pools handed out when ops give none: 10.101.0.0/23, 10.101.2.0/23, ...
_AUTO_POOL4 = ipaddress.IPv4Network("10.101.0.0/16")
_AUTO_POOL6 = ipaddress.IPv6Network("fd00:101::/48")
# Events that change which peers an interface should carry.
PEER_EVENTS = frozenset({"peer.provisioned", "peer.revoked", "peer.expired", "peer.key_rotated"})
TENANT_EVENTS = frozenset(
    {"tenant.verified", "tenant.suspended", "tenant.reinstated", "tenant.terminated"}
)


def endpoint(field: str, value: object) -> str:
    text = validation.text(field, value, max_len=255)
    match = _HOSTPORT.match(text)
    if match is None or not 1 <= int(match.group(2)) <= 65535:
        raise InvalidInput(field, "must be host:port, e.g. vpn-fra.example.net:51820")
    return text


def pool(field: str, value: object, version: int) -> Network:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a CIDR network as a string")
    try:
        net = ipaddress.ip_network(value)
    except ValueError as exc:
        raise InvalidInput(field, f"{value!r} is not a CIDR network ({exc})") from None
    if net.version != version:
        raise InvalidInput(field, f"must be an IPv{version} network")
    if net.num_addresses < 4:
        raise InvalidInput(field, f"{net} is too small (needs at least 4 addresses)")
    return net


@dataclass(frozen=True)
class NewGateway:
    name: str
    endpoint: str
    pool: Network | None
    pool6: Network | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> NewGateway:
        name = validation.text("name", body.get("name"))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise InvalidInput("name", "use letters, digits, '.', '_' and '-' (e.g. fra-1)")
        return cls(
            name=name,
            endpoint=endpoint("endpoint", body.get("endpoint")),
            pool=pool("pool", body["pool"], 4) if body.get("pool") is not None else None,
            pool6=pool("pool6", body["pool6"], 6) if body.get("pool6") is not None else None,
        )


@dataclass(frozen=True)
class Gateway:
    id: str
    name: str
    endpoint: str
    pools: tuple[Network, ...]
    egress: dict[str, Any] | None
    status: str
    revision: int
    public_key: str | None
    listen_port: int | None
    interface_ok: bool | None
    interface_detail: str | None
    last_contact_at: datetime | None
    created_at: datetime
    retired_at: datetime | None


def _gateway(row: Any) -> Gateway:
    return Gateway(
        id=row.id, name=row.name, endpoint=row.endpoint,
        pools=tuple(ipaddress.ip_network(p) for p in json.loads(row.pools)),
        egress=json.loads(row.egress) if row.egress else None, status=row.status,
        revision=int(row.revision), public_key=row.public_key, listen_port=row.listen_port,
        interface_ok=None if row.interface_ok is None else bool(row.interface_ok),
        interface_detail=row.interface_detail, last_contact_at=row.last_contact_at,
        created_at=row.created_at, retired_at=row.retired_at,
    )


async def get_gateway(
    conn: AsyncConnection, gateway_id: str, *, lock: bool = False, share: bool = False
) -> Gateway:
    """`lock`: FOR UPDATE (retirement); `share`: FOR KEY SHARE on PostgreSQL, which any
    number of provisioning transactions hold together (and with the revision bump of
    mark_changed) while a retirement's FOR UPDATE waits for them, and they for it."""
    query = select(gateways).where(gateways.c.id == gateway_id)
    if lock:
        query = query.with_for_update()
    elif share:
        query = query.with_for_update(read=True, key_share=True)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no gateway with id {gateway_id}")
    return _gateway(row)


async def list_gateways(
    conn: AsyncConnection, *, limit: int = 500, after: str | None = None
) -> list[Gateway]:
    query = select(gateways).order_by(gateways.c.id).limit(limit)
    if after:
        query = query.where(gateways.c.id > after)
    return [_gateway(r) for r in (await conn.execute(query)).all()]


async def _taken_pools(conn: AsyncConnection, *, besides: str | None = None) -> list[Network]:
    rows = (await conn.execute(select(gateways.c.id, gateways.c.pools))).all()
    return [
        ipaddress.ip_network(p) for r in rows if r.id != besides for p in json.loads(r.pools)
    ]


def _check_overlap(wanted: Iterable[Network], taken: Sequence[Network]) -> None:
    for net in wanted:
        for other in taken:
            if net.version == other.version and net.overlaps(other):
                raise PoolOverlap(
                    f"pool {net} overlaps {other} of another gateway; pools of different "
                    "gateways never overlap — choose another range or leave it out to get one",
                    pool=str(net),
                )


def _free_pool(base: Network, prefix: int, taken: Sequence[Network]) -> Network:
    for candidate in base.subnets(new_prefix=prefix):
        if not any(candidate.version == t.version and candidate.overlaps(t) for t in taken):
            return candidate
    raise PoolOverlap(f"no free /{prefix} left in {base}; give the pool explicitly")


async def choose_pools(conn: AsyncConnection, new: NewGateway) -> tuple[Network, ...]:
    """The pools a new gateway gets: those asked for, else the next free ones."""
    taken = await _taken_pools(conn)
    pool4 = new.pool or _free_pool(_AUTO_POOL4, 23, taken)
    pool6 = new.pool6 or _free_pool(_AUTO_POOL6, 64, taken)
    _check_overlap((pool4, pool6), taken)
    return (pool4, pool6)


async def register_gateway(
    conn: AsyncConnection, gateway_id: str, new: NewGateway, *, pools: Sequence[Network],
    egress: dict[str, Any] | None, now: datetime, actor: str,
) -> Outcome[Gateway]:
    if await conn.scalar(select(gateways.c.id).where(gateways.c.name == new.name)):
        raise GatewayUnavailable(f"a gateway named {new.name!r} exists; choose another name")
    await conn.execute(insert(gateways).values(
        id=gateway_id, name=new.name, endpoint=new.endpoint,
        pools=json.dumps([str(p) for p in pools]),
        egress=json.dumps(egress, sort_keys=True) if egress is not None else None,
        # Revision 0 means "nothing yet" to an agent, so a gateway starts at 1.
        status="active", revision=1, created_at=now,
    ))
    await addresses.ensure_pools(conn, pools)
    gateway = await get_gateway(conn, gateway_id)
    event = Event("gateway.registered", {
        "gateway_id": gateway_id, "name": new.name, "endpoint": new.endpoint,
        "pools": tuple(str(p) for p in pools), "actor": actor,
    })
    return Outcome(gateway, (event,))


async def ensure_default_gateway(
    conn: AsyncConnection, gateway_id: str, *, endpoint: str, public_key: str | None,
    listen_port: int, pools: Sequence[Network], now: datetime,
) -> None:
    """The gateway of `vpngw serve`'s own settings, kept equal to them; older peers join it."""
    values: dict[str, Any] = {
        "endpoint": endpoint, "pools": json.dumps([str(p) for p in pools]),
        "listen_port": listen_port,
    }
    if public_key is not None:
        values["public_key"] = public_key
    exists = await conn.scalar(select(gateways.c.id).where(gateways.c.id == gateway_id))
    if exists is None:
        name = gateway_id
        if await conn.scalar(select(gateways.c.id).where(gateways.c.name == name)):
            name = f"{gateway_id}-default"
        await conn.execute(insert(gateways).values(
            id=gateway_id, name=name, status="active", revision=1, created_at=now, **values
        ))
    else:
        await conn.execute(update(gateways).where(gateways.c.id == gateway_id).values(**values))
    await conn.execute(
        update(peers).where(peers.c.gateway_id.is_(None)).values(gateway_id=gateway_id)
    )


async def retire_gateway(
    conn: AsyncConnection, gateway_id: str, *, reason: str, now: datetime, actor: str,
    default_gateway: str,
) -> Outcome[Gateway]:
    gateway = await get_gateway(conn, gateway_id, lock=True)
    if gateway.status == "retired":
        raise GatewayUnavailable(f"gateway {gateway_id} is already retired")
    if gateway_id == default_gateway:
        raise GatewayUnavailable(
            "this is the default gateway of the control plane's own settings "
            "(network.gateway_id); it cannot be retired"
        )
    active = await count_active_peers(conn, gateway_id)
    if active:
        raise GatewayUnavailable(
            f"gateway has {active} active peer(s); revoke them (or have their tenants "
            "recreate them on another gateway) before retiring it", active_peers=active,
        )
    await conn.execute(update(gateways).where(gateways.c.id == gateway_id)
                       .values(status="retired", retired_at=now))
    event = Event("gateway.retired", {"gateway_id": gateway_id, "reason": reason, "actor": actor})
    return Outcome(await get_gateway(conn, gateway_id), (event,))


async def count_active_peers(conn: AsyncConnection, gateway_id: str) -> int:
    return int(await conn.scalar(select(func.count()).select_from(peers).where(
        peers.c.gateway_id == gateway_id, peers.c.status == "active")) or 0)


async def set_tenant_default(
    conn: AsyncConnection, tenant_id: str, gateway_id: str | None
) -> str | None:
    """Where the tenant's new peers go when a request names no gateway (None: anywhere)."""
    if await conn.scalar(select(tenants.c.id).where(tenants.c.id == tenant_id)) is None:
        raise NotFound(f"no tenant with id {tenant_id}")
    if gateway_id is not None:
        try:
            gateway = await get_gateway(conn, gateway_id)
        except NotFound:
            raise InvalidInput("gateway_id", f"no gateway with id {gateway_id}") from None
        if gateway.status != "active":
            raise GatewayUnavailable(f"gateway {gateway_id} is {gateway.status}")
    await conn.execute(update(tenants).where(tenants.c.id == tenant_id)
                       .values(default_gateway_id=gateway_id))
    return gateway_id


_DEFAULT_GATEWAY = "SELECT default_gateway_id FROM tenants WHERE id = ?"
_GATEWAY_COLUMNS = tuple(c.name for c in gateways.columns)
_ACTIVE_GATEWAYS = (f"SELECT {', '.join(_GATEWAY_COLUMNS)} FROM gateways"  # noqa: S608
                    " WHERE status = 'active' ORDER BY created_at, id")
# The one active gateway, share-locked (as get_gateway(share=True)): a retirement that
# committed since the read above refuses; one that starts later waits for our commit.
_SHARE_GATEWAY = "SELECT status, public_key FROM gateways WHERE id = ? FOR KEY SHARE"
_GATEWAY_TIMES = frozenset({"last_contact_at", "created_at", "retired_at"})


class _DriverRow:
    """A gateways row read on the driver, with the attributes _gateway() reads."""

    def __init__(self, db: Driver, values: Sequence[Any]) -> None:
        for name, value in zip(_GATEWAY_COLUMNS, values, strict=True):
            setattr(self, name, db.from_time(value) if name in _GATEWAY_TIMES else value)

    def __getattr__(self, name: str) -> Any:  # (for the type checker: set in __init__)
        raise AttributeError(name)


async def pick_gateway(
    conn: AsyncConnection, wanted: str | None, *, tenant_id: str | None = None
) -> Gateway:
    """The gateway asked for (must be active), else the tenant's default if ops set one,
    else the active gateway with the most free addresses."""
    if wanted is None and tenant_id is not None:
        wanted = await (await Driver.of(conn)).fetchval(_DEFAULT_GATEWAY, (tenant_id,))
    if wanted is not None:
        if not ids.is_id(wanted) and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", wanted):
            raise InvalidInput("gateway_id", "must be a gateway id from GET /ops/v1/gateways")
        try:
            gateway = await get_gateway(conn, wanted, share=True)
        except NotFound:
            raise InvalidInput("gateway_id", f"no gateway with id {wanted}") from None
        if gateway.status != "active":
            raise GatewayUnavailable(
                f"gateway {wanted} is {gateway.status}; choose an active gateway"
            )
        return gateway
    db = await Driver.of(conn)
    rows = [_DriverRow(db, r) for r in await db.fetch(_ACTIVE_GATEWAYS)]
    if not rows:
        raise GatewayUnavailable("no active gateway; ask the provider to register one")
    if len(rows) == 1:  # nothing to choose between: skip counting every active peer
        if not db.postgres:  # read under SQLite's one writer's lock: still true
            return _gateway(rows[0])
        locked = await db.fetch(_SHARE_GATEWAY, (rows[0].id,))
        if not locked or locked[0][0] != "active":
            raise GatewayUnavailable(f"gateway {rows[0].id} was retired meanwhile; retry")
        # The key as the lock found it (an agent may have reported one meanwhile).
        return replace(_gateway(rows[0]), public_key=locked[0][1])
    counts: dict[str, int] = {
        r[0]: int(r[1]) for r in (await conn.execute(
            select(peers.c.gateway_id, func.count()).where(peers.c.status == "active")
            .group_by(peers.c.gateway_id))).all()
    }
    best = max(rows, key=lambda r: _free(_gateway(r), counts.get(r.id, 0)))
    return await _still_active(conn, best.id)


async def _still_active(conn: AsyncConnection, gateway_id: str) -> Gateway:
    """The chosen gateway, share-locked; a retirement that committed meanwhile refuses."""
    gateway = await get_gateway(conn, gateway_id, share=True)
    if gateway.status != "active":
        raise GatewayUnavailable(f"gateway {gateway_id} was retired meanwhile; retry")
    return gateway


def _free(gateway: Gateway, active: int) -> int:
    pool4 = [p for p in gateway.pools if p.version == 4]
    capacity = addresses.client_capacity(pool4[0]) if pool4 else 1 << 62
    return capacity - active


async def mark_changed(conn: AsyncConnection, events: Sequence[Event]) -> list[str]:
    """Bump the revision of every gateway whose desired peers these events change, and
    stamp the changed peers with it; returns the gateways touched (to wake their agents)."""
    peer_ids = sorted({str(e.attrs["peer_id"]) for e in events
                       if e.type in PEER_EVENTS and "peer_id" in e.attrs})
    tenant_ids = sorted({str(e.attrs["tenant_id"]) for e in events
                         if e.type in TENANT_EVENTS and "tenant_id" in e.attrs})
    if not peer_ids and not tenant_ids:
        return []
    known = _gateways_named(events)
    if known is not None and not tenant_ids:
        return await _bump_revisions(conn, known)
    which = peers.c.id.in_(peer_ids) | peers.c.tenant_id.in_(tenant_ids)
    touched = sorted(g for g in (await conn.scalars(
        select(peers.c.gateway_id).where(which).distinct())).all() if g is not None)
    if not touched:
        return []
    # A fixed number of statements however many gateways a change spans (a tenant's
    # suspension may touch them all): lock the rows in id order (concurrent changes never
    # deadlock), bump every revision at once, stamp each peer with its gateway's new one.
    # FOR NO KEY UPDATE, the lock the UPDATE below takes anyway: it coexists with the FOR
    # KEY SHARE that provisioning holds on its gateway, so two creates cannot deadlock.
    await conn.execute(select(gateways.c.id).where(gateways.c.id.in_(touched))
                       .order_by(gateways.c.id).with_for_update(key_share=True))
    await conn.execute(update(gateways).where(gateways.c.id.in_(touched))
                       .values(revision=gateways.c.revision + 1))
    new_revision = (select(gateways.c.revision).where(gateways.c.id == peers.c.gateway_id)
                    .scalar_subquery())
    # Not `gateway_id IN touched` (the same rows): SQLite would walk that gateway's every
    # peer by its index, O(peers) on each provisioning commit, instead of the few in `which`.
    await conn.execute(update(peers).where(which, peers.c.gateway_id.is_not(None))
                       .values(revision=new_revision))
    return touched


def _gateways_named(events: Sequence[Event]) -> dict[str, list[str]] | None:
    """gateway id -> its peers changed, when every peer event names the peer's gateway
    (a create's does: nothing needs reading back), else None."""
    known: dict[str, list[str]] = {}
    for e in events:
        if e.type not in PEER_EVENTS or "peer_id" not in e.attrs:
            continue
        if e.type != "peer.provisioned" or not e.attrs.get("gateway_id"):
            return None
        known.setdefault(str(e.attrs["gateway_id"]), []).append(str(e.attrs["peer_id"]))
    return known


_LOCK_GATEWAYS = "SELECT id FROM gateways WHERE {which} ORDER BY id FOR NO KEY UPDATE"
_BUMP_REVISION = "UPDATE gateways SET revision = revision + 1 WHERE id = ? RETURNING revision"


async def _bump_revisions(conn: AsyncConnection, changed: dict[str, list[str]]) -> list[str]:
    """mark_changed for peers whose gateways are known, as text on the driver: one
    revision bump per gateway and one stamp of its peers."""
    db = await Driver.of(conn)
    touched = sorted(changed)
    if len(touched) > 1 and db.postgres:  # in id order, as mark_changed locks them
        which, params = db.in_list("id", touched)
        await db.fetch(_LOCK_GATEWAYS.format(which=which), params)
    for gateway_id in touched:
        revision = await db.fetchval(_BUMP_REVISION, (gateway_id,))
        if revision is None:  # not a gateway (cannot happen: peers reference one)
            continue
        which, params = db.in_list("id", sorted(changed[gateway_id]))
        await db.executemany(
            f"UPDATE peers SET revision = ? WHERE {which}", [(revision, *params)])  # noqa: S608
    return touched


@dataclass(frozen=True)
class PeerEntry:
    """One peer as its gateway's interface should carry it."""

    peer_id: str
    tenant_id: str
    public_key: str
    preshared_key: str | None
    tunnel_ips: tuple[str, ...]


@dataclass(frozen=True)
class DesiredState:
    """A gateway's desired peers at `revision`: everything (`full`) or what changed since."""

    gateway_id: str
    revision: int
    full: bool
    peers: tuple[PeerEntry, ...]
    removed: tuple[str, ...]  # peer ids


async def gateway_revision(conn: AsyncConnection, gateway_id: str) -> int:
    return int(await conn.scalar(
        select(gateways.c.revision).where(gateways.c.id == gateway_id)) or 0)


async def desired_state(
    conn: AsyncConnection, gateway_id: str, *, since: int, now: datetime,
    revision: int | None = None,
) -> DesiredState:
    """Full state on first contact (`since` 0) or after a gap the agent cannot bridge (its
    revision is ahead of ours: a restored database); otherwise only the peers changed.

    `revision`: the gateway's revision as the caller just read it on `conn` (saves a read).
    """
    if revision is None:
        revision = await gateway_revision(conn, gateway_id)
    full = since <= 0 or since > revision
    query = (
        select(peers.c.id, peers.c.tenant_id, peers.c.public_key, peers.c.preshared_key,
               peers.c.status, peers.c.expires_at, tenants.c.status.label("tenant_status"))
        .join(tenants, tenants.c.id == peers.c.tenant_id)
        .where(peers.c.gateway_id == gateway_id)
    )
    if full:
        query = query.where(peers.c.status == "active")
    elif since == revision:
        return DesiredState(gateway_id, revision, False, (), ())
    else:
        query = query.where(peers.c.revision > since)
    rows = (await conn.execute(query)).all()
    wanted = [r for r in rows if r.status == "active" and r.tenant_status == "verified"
              and (r.expires_at is None or r.expires_at > now)]
    ips = await addresses.addresses_of(conn, [r.id for r in wanted])
    entries = tuple(PeerEntry(r.id, r.tenant_id, r.public_key, r.preshared_key,
                              tuple(ips[r.id])) for r in wanted)
    wanted_ids = {r.id for r in wanted}
    removed = () if full else tuple(sorted(r.id for r in rows if r.id not in wanted_ids))
    return DesiredState(gateway_id, revision, full, entries, removed)


async def record_contact(
    conn: AsyncConnection, gateway_id: str, *, now: datetime, public_key: str | None = None,
    listen_port: int | None = None, ok: bool | None = None, detail: str | None = None,
) -> None:
    values: dict[str, Any] = {"last_contact_at": now}
    if public_key is not None:
        values["public_key"] = public_key
    if listen_port is not None:
        values["listen_port"] = listen_port
    if ok is not None:
        values["interface_ok"] = int(ok)
    if detail is not None:
        values["interface_detail"] = detail[:500]
    await conn.execute(update(gateways).where(gateways.c.id == gateway_id).values(**values))


@dataclass(frozen=True)
class KeyOwner:
    peer_id: str
    tenant_id: str
    gateway_id: str | None


# Built once (an agent's every upload looks its keys up): one cached statement, its IN
# list expanded per call.
_KEY_OWNERS = (
    select(public_keys.c.public_key, peers.c.id, peers.c.tenant_id, peers.c.gateway_id)
    .join(peers, peers.c.id == public_keys.c.peer_id)
    .where(public_keys.c.public_key.in_(bindparam("keys", expanding=True)))
)


async def key_owners(conn: AsyncConnection, keys: Iterable[bytes]) -> dict[bytes, KeyOwner]:
    """Raw public key → its peer (keys rotated away since included: they still name it)."""
    wanted = {base64.b64encode(k).decode("ascii"): k for k in keys}
    if not wanted:
        return {}
    found: dict[bytes, KeyOwner] = {}
    names = sorted(wanted)
    for start in range(0, len(names), 500):
        rows = await conn.execute(_KEY_OWNERS, {"keys": names[start : start + 500]})
        for key, peer_id, tenant_id, gateway_id in rows:
            found[wanted[key]] = KeyOwner(peer_id, tenant_id, gateway_id)
    return found
