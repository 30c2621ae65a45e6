"""Peers of verified tenants: provisioning, rotation, revocation, expiry and the desired set.

Lock order (PostgreSQL; SQLite has one writer): every change of a peer locks its
tenant's row first, then the peer's row (several peers: in id order), and decides only
on what it read after taking the locks. Concurrent changes of one peer therefore queue
instead of each acting on a stale read, and no two changes can wait for each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning import addresses, ids, keys, validation
from provisioning.driver import Driver
from provisioning.errors import (
    ConcurrentChange,
    DomainError,
    DuplicatePublicKey,
    InvalidInput,
    NotFound,
    PeerNotActive,
    QuotaExceeded,
    TenantNotVerified,
)
from provisioning.events import Event, Outcome
from provisioning.schema import peers, public_keys, tenants
from provisioning.tenants import (
    Tenant,
    TenantStatus,
    get_tenant,
    require_verified,
)

NAME_MAX = 64
STATUSES = ("active", "revoked", "expired")


@dataclass(frozen=True)
class PoolPolicy:
    """Where tunnel addresses come from and how long a released one rests."""

    networks: tuple[addresses.Network, ...]
    quarantine: timedelta
    gateway_id: str


@dataclass(frozen=True)
class NewPeer:
    name: str
    public_key: str | None
    preshared_key: bool
    expires_at: datetime | None
    gateway_id: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any], *, now: datetime) -> NewPeer:
        public_key = body.get("public_key")
        expires_at = body.get("expires_at")
        parsed_expiry = None
        if expires_at is not None:
            parsed_expiry = validation.timestamp("expires_at", expires_at)
            if parsed_expiry <= now:
                raise InvalidInput("expires_at", "must be in the future")
        return cls(
            name=validation.text("name", body.get("name"), max_len=NAME_MAX),
            public_key=None if public_key is None else keys.normalise_public_key(public_key),
            preshared_key=validation.boolean("preshared_key", body.get("preshared_key", False)),
            expires_at=parsed_expiry,
            gateway_id=None if body.get("gateway_id") is None
            else validation.text("gateway_id", body.get("gateway_id")),
        )


@dataclass(frozen=True)
class Peer:
    id: str
    tenant_id: str
    name: str
    public_key: str
    status: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    key_rotated_at: datetime | None
    tunnel_ips: tuple[str, ...]
    has_preshared_key: bool
    gateway_id: str | None = None
    # Only set in the response that created it: never stored, never logged.
    private_key: str | None = None
    preshared_key: str | None = None

    def __repr__(self) -> str:
        return f"Peer(id={self.id!r}, public_key={self.public_key!r}, status={self.status!r})"

    def without_private_key(self) -> Peer:
        """The same peer with its one-time secrets dropped (they went into a sealed link)."""
        return dataclasses.replace(self, private_key=None, preshared_key=None)


def _peer(row: Any, tunnel_ips: Sequence[str]) -> Peer:
    return Peer(
        id=row.id, tenant_id=row.tenant_id, name=row.name, public_key=row.public_key,
        status=row.status, created_at=row.created_at, expires_at=row.expires_at,
        revoked_at=row.revoked_at, key_rotated_at=row.key_rotated_at,
        tunnel_ips=tuple(tunnel_ips), has_preshared_key=row.preshared_key is not None,
        gateway_id=row.gateway_id,
    )


_KEY_IN_USE = (
    "this public key is already registered on this gateway; generate a new key pair "
    "on the device (`wg genkey | tee private.key | wg pubkey`)"
)


async def _ensure_key_unused(conn: AsyncConnection, public_key: str) -> None:
    if await conn.scalar(
        select(public_keys.c.peer_id).where(public_keys.c.public_key == public_key)
    ):
        raise DuplicatePublicKey(_KEY_IN_USE)


# Built once and executed with parameters: saves SQLAlchemy's per-call statement
# construction and cache-key generation on the provisioning hot path.
_INSERT_PEER = insert(peers)
_INSERT_PUBLIC_KEY = insert(public_keys)


async def _claim_public_key(
    conn: AsyncConnection, public_key: str, peer_id: str, now: datetime
) -> None:
    try:
        await conn.execute(
            _INSERT_PUBLIC_KEY, {"public_key": public_key, "peer_id": peer_id, "added_at": now}
        )
    except IntegrityError as exc:  # a concurrent request won the race for this key
        raise DuplicatePublicKey(_KEY_IN_USE) from exc


@dataclass(frozen=True)
class ProvisionRequest:
    """One `POST /v1/peers`: who asks, what for, and on which gateway's pools."""

    tenant_id: str
    new: NewPeer
    policy: PoolPolicy
    actor: str


@dataclass(frozen=True)
class _Planned:
    """A request with its id and keys chosen (no database work yet)."""

    request: ProvisionRequest
    peer_id: str
    public_key: str
    private_key: str | None
    preshared_key: str | None

    @classmethod
    def of(cls, request: ProvisionRequest) -> _Planned:
        pair = None if request.new.public_key else keys.generate_key_pair()
        return cls(
            request=request, peer_id=ids.new_id(),
            public_key=request.new.public_key or (pair.public_key if pair else ""),
            private_key=pair.private_key if pair else None,
            preshared_key=keys.generate_preshared_key() if request.new.preshared_key else None,
        )

    def peer_row(self, now: datetime) -> dict[str, Any]:
        r = self.request
        return {
            "id": self.peer_id, "tenant_id": r.tenant_id, "name": r.new.name,
            "public_key": self.public_key, "preshared_key": self.preshared_key,
            "status": "active", "created_at": now, "expires_at": r.new.expires_at,
            "gateway_id": r.policy.gateway_id,
        }

    def key_row(self, now: datetime) -> dict[str, Any]:
        return {"public_key": self.public_key, "peer_id": self.peer_id, "added_at": now}

    def outcome(self, tunnel_ips: Sequence[str], now: datetime) -> Outcome[Peer]:
        r = self.request
        peer = Peer(
            id=self.peer_id, tenant_id=r.tenant_id, name=r.new.name,
            public_key=self.public_key, status="active", created_at=now,
            expires_at=r.new.expires_at, revoked_at=None, key_rotated_at=None,
            tunnel_ips=tuple(tunnel_ips), has_preshared_key=self.preshared_key is not None,
            gateway_id=r.policy.gateway_id,
            private_key=self.private_key, preshared_key=self.preshared_key,
        )
        attrs: dict[str, str | int | tuple[str, ...]] = {
            "peer_id": self.peer_id, "tenant_id": r.tenant_id, "public_key": self.public_key,
            "tunnel_ips": tuple(tunnel_ips), "gateway_id": r.policy.gateway_id,
            "actor": r.actor, "key_origin": "client" if r.new.public_key else "server",
        }
        if r.new.expires_at is not None:
            attrs["expires_at"] = validation.rfc3339(r.new.expires_at)
        return Outcome(peer, (Event("peer.provisioned", attrs),))


# The quota and the tenant's state in one statement: the counter moves only while the
# tenant is verified and stays within its quota. On PostgreSQL the UPDATE also waits
# for (and then re-reads) a concurrent suspension, as the row lock did before.
_TAKE_QUOTA = (
    update(tenants)
    .where(
        tenants.c.id == bindparam("tenant_id"),
        tenants.c.status == TenantStatus.VERIFIED.value,
        tenants.c.active_peers + bindparam("n") <= tenants.c.max_peers,
    )
    .values(active_peers=tenants.c.active_peers + bindparam("n"))
    .returning(tenants.c.active_peers)
)
_TENANT_QUOTA = select(
    tenants.c.id, tenants.c.status, tenants.c.active_peers, tenants.c.max_peers
).where(tenants.c.id.in_(bindparam("ids", expanding=True)))


def _refusal(tenant: Any, tenant_id: str, *, taken_here: int = 0) -> DomainError:
    """Why a tenant (a row of _TENANT_QUOTA, or None) cannot have one more peer
    (`taken_here`: places already given to earlier requests of the same group)."""
    if tenant is None:
        return NotFound(f"no tenant with id {tenant_id}")
    if tenant.status != TenantStatus.VERIFIED.value:
        return TenantNotVerified(
            f"tenant is {tenant.status}; only verified tenants can provision peers — "
            "contact the provider's operations team",
            tenant_status=tenant.status,
        )
    return QuotaExceeded(
        f"tenant has {tenant.active_peers + taken_here} of {tenant.max_peers} allowed peers; "
        "revoke unused peers or ask the provider to raise the quota",
        max_peers=tenant.max_peers,
    )


async def _take_quota(conn: AsyncConnection, tenant_id: str, n: int) -> bool:
    return await conn.scalar(_TAKE_QUOTA, {"tenant_id": tenant_id, "n": n}) is not None


async def _provision_one(conn: AsyncConnection, planned: _Planned, *, now: datetime
                         ) -> Outcome[Peer]:
    """One peer, statement by statement (call inside a savepoint: a refusal rolls it back)."""
    request = planned.request
    # No look-up of the key first: the unique public key of `peers` and the primary key
    # of `public_keys` (every key ever used) refuse a reused key anyway.
    try:
        await conn.execute(_INSERT_PEER, planned.peer_row(now))
        await conn.execute(_INSERT_PUBLIC_KEY, planned.key_row(now))
    except IntegrityError as exc:  # a concurrent request won the race for this key
        raise DuplicatePublicKey(_KEY_IN_USE) from exc
    policy = request.policy
    tunnel_ips = [
        await addresses.allocate_address(conn, net, planned.peer_id, now=now,
                                         quarantine=policy.quarantine)
        for net in policy.networks
    ]
    # Last, so that on PostgreSQL the tenant's row is locked only from here to the commit.
    if not await _take_quota(conn, request.tenant_id, 1):
        row = (await conn.execute(_TENANT_QUOTA, {"ids": [request.tenant_id]})).first()
        raise _refusal(row, request.tenant_id)
    return planned.outcome(tunnel_ips, now)


async def provision_peer(
    conn: AsyncConnection, tenant_id: str, new: NewPeer, *, policy: PoolPolicy, now: datetime,
    actor: str,
) -> Outcome[Peer]:
    return await _provision_one(conn, _Planned.of(ProvisionRequest(tenant_id, new, policy, actor)),
                                now=now)


class _NotInBulk(Exception):
    """The group cannot be written in bulk (a race or a nearly full pool): go one by one."""


Provisioned = Outcome[Peer] | DomainError


async def provision_peers(
    conn: AsyncConnection, requests: Sequence[ProvisionRequest | DomainError], *,
    now: datetime,
) -> list[Provisioned]:
    """Provision a group of peers in the caller's transaction; one result per request.

    A request refused (quota, tenant state, key in use, pool exhausted) leaves nothing
    behind and does not affect the others. In the common case the whole group takes a
    fixed number of statements (bulk inserts, one address claim per pool, one counter
    update per tenant); when the bulk write cannot be exact (a key taken meanwhile by
    another process, a pool about to run out, the tenant changed under us) it is rolled
    back to its savepoint and the group is done one request at a time, each in its own
    savepoint.
    """
    results: list[Provisioned | None] = [r if isinstance(r, DomainError) else None
                                         for r in requests]
    planned = [(i, _Planned.of(r)) for i, r in enumerate(requests)
               if not isinstance(r, DomainError)]
    try:
        async with conn.begin_nested():
            done = await _provision_bulk(conn, [p for _, p in planned], now=now)
    except (_NotInBulk, IntegrityError):
        done = []
        for _, p in planned:
            try:
                async with conn.begin_nested():
                    done.append(await _provision_one(conn, p, now=now))
            except DomainError as exc:
                done.append(exc)
    for (i, _), result in zip(planned, done, strict=True):
        results[i] = result
    return [r for r in results if r is not None]


# The bulk path's statements, as text on the driver (see provisioning.driver).
_BULK_INSERT_PEERS = (
    "INSERT INTO peers (id, tenant_id, name, public_key, preshared_key, status, created_at,"
    " expires_at, gateway_id) VALUES (?, ?, ?, ?, ?, 'active', ?, ?, ?)")
_BULK_INSERT_KEYS = "INSERT INTO public_keys (public_key, peer_id, added_at) VALUES (?, ?, ?)"
_BULK_TAKE_QUOTA = (
    "UPDATE tenants SET active_peers = active_peers + ? WHERE id = ? AND status = ?"
    " AND active_peers + ? <= max_peers RETURNING active_peers")


@dataclass(frozen=True)
class _QuotaRow:
    id: str
    status: str
    active_peers: int
    max_peers: int


async def _provision_bulk(conn: AsyncConnection, planned: Sequence[_Planned], *, now: datetime
                          ) -> list[Provisioned]:
    db = await Driver.of(conn)
    refused: dict[int, DomainError] = {}
    tenant_ids = sorted({p.request.tenant_id for p in planned})
    which, params = db.in_list("id", tenant_ids)
    tenant_rows = {r[0]: _QuotaRow(r[0], r[1], int(r[2]), int(r[3])) for r in await db.fetch(
        f"SELECT id, status, active_peers, max_peers FROM tenants WHERE {which}",  # noqa: S608
        params)}
    room = {t: r.max_peers - r.active_peers for t, r in tenant_rows.items()}
    taken = dict.fromkeys(tenant_rows, 0)
    which, params = db.in_list("public_key", sorted({p.public_key for p in planned}))
    in_use = {r[0] for r in await db.fetch(
        f"SELECT public_key FROM public_keys WHERE {which}", params)}  # noqa: S608
    for n, p in enumerate(planned):
        tenant_id = p.request.tenant_id
        tenant = tenant_rows.get(tenant_id)
        # The tenant's state, then the key, then the quota: a reused key is refused
        # whatever the quota, so its answer does not depend on who else came along.
        if tenant is None or tenant.status != TenantStatus.VERIFIED.value:
            refused[n] = _refusal(tenant, tenant_id)
        elif p.public_key in in_use:
            refused[n] = DuplicatePublicKey(_KEY_IN_USE)
        elif room[tenant_id] <= 0:
            refused[n] = _refusal(tenant, tenant_id, taken_here=taken[tenant_id])
        else:
            room[tenant_id] -= 1
            taken[tenant_id] += 1
            in_use.add(p.public_key)  # a second request with the same key in this group
    accepted = [p for n, p in enumerate(planned) if n not in refused]
    created = db.time(now)
    await db.executemany(_BULK_INSERT_PEERS, [
        (p.peer_id, p.request.tenant_id, p.request.new.name, p.public_key, p.preshared_key,
         created, db.time(p.request.new.expires_at), p.request.policy.gateway_id)
        for p in accepted])
    await db.executemany(_BULK_INSERT_KEYS, [(p.public_key, p.peer_id, created)
                                             for p in accepted])
    tunnel_ips: dict[tuple[str, addresses.Network], str] = {}
    by_network: dict[addresses.Network, list[str]] = {}
    for p in accepted:
        for net in p.request.policy.networks:
            by_network.setdefault(net, []).append(p.peer_id)
    # Pools in one order (by CIDR) in every group, so two groups never wait on each other.
    for net in sorted(by_network, key=str):
        assigned = await addresses.allocate_fresh(db, net, by_network[net])
        if assigned is None:
            raise _NotInBulk(f"pool {net} is nearly full")
        for peer_id, address in zip(by_network[net], assigned, strict=True):
            tunnel_ips[peer_id, net] = address
    # Last, so that on PostgreSQL the tenants' rows are locked only from here to the commit.
    verified = TenantStatus.VERIFIED.value
    for tenant_id in sorted(taken):  # in id order, as every change locks tenants
        n_taken = taken[tenant_id]
        if n_taken and await db.fetchval(
                _BULK_TAKE_QUOTA, (n_taken, tenant_id, verified, n_taken)) is None:
            raise _NotInBulk(f"tenant {tenant_id} changed since it was read")
    return [refused[n] if n in refused else p.outcome(
        [tunnel_ips[p.peer_id, net] for net in p.request.policy.networks], now)
        for n, p in enumerate(planned)]


async def _get_row(conn: AsyncConnection, tenant_id: str | None, peer_id: str) -> Any:
    if not ids.is_id(peer_id):
        raise NotFound(f"no peer with id {peer_id}")
    query = select(peers).where(peers.c.id == peer_id)
    if tenant_id is not None:
        query = query.where(peers.c.tenant_id == tenant_id)
    row = (await conn.execute(query)).first()
    if row is None:  # another tenant's peer looks exactly like a missing one
        raise NotFound(f"no peer with id {peer_id}")
    return row


_PEER_BY_ID_FOR_UPDATE = select(peers).where(peers.c.id == bindparam("peer_id")).with_for_update()


async def _lock_row(conn: AsyncConnection, peer_id: str) -> Any:
    """The peer's row, locked until the transaction ends; call with its tenant locked."""
    return (await conn.execute(_PEER_BY_ID_FOR_UPDATE, {"peer_id": peer_id})).one()


async def _lock_for_change(
    conn: AsyncConnection, tenant_id: str | None, peer_id: str
) -> tuple[Any, Tenant, Any]:
    """(the row as the request found it, the locked tenant, the locked row), in lock order."""
    seen = await _get_row(conn, tenant_id, peer_id)
    tenant = await get_tenant(conn, seen.tenant_id, lock=True)
    return seen, tenant, await _lock_row(conn, peer_id)


async def get_peer(conn: AsyncConnection, tenant_id: str | None, peer_id: str) -> Peer:
    row = await _get_row(conn, tenant_id, peer_id)
    return _peer(row, (await addresses.addresses_of(conn, [peer_id]))[peer_id])


async def deliverable_config(
    conn: AsyncConnection, tenant_id: str, peer_id: str
) -> tuple[Peer, str | None]:
    """The peer and its preshared key, if its config may be handed out now.

    A config holds the preshared key, so only an active peer of a verified tenant gets
    one: a suspended tenant's devices must not be re-armed behind the provider's back.
    """
    require_verified(await get_tenant(conn, tenant_id), refused="config downloads")
    row = await _get_row(conn, tenant_id, peer_id)
    if row.status != "active":
        raise PeerNotActive(f"peer {peer_id} is {row.status}; it has no usable config",
                            peer_status=row.status)
    peer = _peer(row, (await addresses.addresses_of(conn, [peer_id]))[peer_id])
    return peer, row.preshared_key


async def get_preshared_key(conn: AsyncConnection, tenant_id: str, peer_id: str) -> str | None:
    row = await _get_row(conn, tenant_id, peer_id)
    return row.preshared_key  # type: ignore[no-any-return]


async def list_peers(
    conn: AsyncConnection, tenant_id: str, *, limit: int, after: str | None,
    status: str | None = None,
) -> list[Peer]:
    query = select(peers).where(peers.c.tenant_id == tenant_id).order_by(peers.c.id).limit(limit)
    if after:
        query = query.where(peers.c.id > after)
    if status:
        query = query.where(peers.c.status == status)
    rows = (await conn.execute(query)).all()
    ips = await addresses.addresses_of(conn, [r.id for r in rows])
    return [_peer(r, ips[r.id]) for r in rows]


_RELEASE_QUOTA = (
    update(tenants).where(tenants.c.id == bindparam("tenant_id"))
    .values(active_peers=tenants.c.active_peers - 1)
)


async def _end_peer(
    conn: AsyncConnection, row: Any, *, status: str, event_type: str, now: datetime,
    attrs: dict[str, str | int | tuple[str, ...]],
) -> tuple[Event, ...]:
    await conn.execute(update(peers).where(peers.c.id == row.id)
                       .values(status=status, revoked_at=now))
    await conn.execute(_RELEASE_QUOTA, {"tenant_id": row.tenant_id})
    await conn.execute(update(public_keys).where(public_keys.c.peer_id == row.id,
                                                 public_keys.c.retired_at.is_(None))
                       .values(retired_at=now))
    ended = Event(event_type, {"peer_id": row.id, "tenant_id": row.tenant_id,
                               "public_key": row.public_key, **attrs})
    released = await addresses.release_addresses(conn, row.id, tenant_id=row.tenant_id, now=now)
    return (ended, *released)


async def revoke_peer(
    conn: AsyncConnection, tenant_id: str | None, peer_id: str, *, now: datetime, actor: str,
    reason: str = "revoked by tenant",
) -> Outcome[Peer]:
    _, _, row = await _lock_for_change(conn, tenant_id, peer_id)
    if row.status != "active":
        raise PeerNotActive(f"peer {peer_id} is already {row.status}", peer_status=row.status)
    events = await _end_peer(conn, row, status="revoked", event_type="peer.revoked", now=now,
                             attrs={"actor": actor, "reason": reason})
    peer = replace(_peer(row, ()), status="revoked", revoked_at=now)
    return Outcome(peer, events)


async def revoke_tenant_peers(
    conn: AsyncConnection, tenant_id: str, *, now: datetime, actor: str, reason: str
) -> tuple[Event, ...]:
    """Revoke every active peer of a tenant whose row the caller has locked."""
    rows = (await conn.execute(select(peers).where(
        peers.c.tenant_id == tenant_id, peers.c.status == "active"
    ).order_by(peers.c.id).with_for_update())).all()
    events: list[Event] = []
    for row in rows:
        events.extend(await _end_peer(conn, row, status="revoked", event_type="peer.revoked",
                                      now=now, attrs={"actor": actor, "reason": reason}))
    return tuple(events)


async def expire_due_peers(
    conn: AsyncConnection, *, now: datetime, limit: int = 500
) -> tuple[Event, ...]:
    due = (await conn.execute(select(peers.c.id, peers.c.tenant_id).where(
        peers.c.status == "active", peers.c.expires_at.is_not(None), peers.c.expires_at <= now
    ).limit(limit))).all()
    events: list[Event] = []
    # Tenants in id order, then each one's peers in id order: the order every change uses.
    for tenant_id, peer_id in sorted((r.tenant_id, r.id) for r in due):
        await get_tenant(conn, tenant_id, lock=True)
        row = await _lock_row(conn, peer_id)
        if row.status != "active":  # revoked meanwhile
            continue
        events.extend(await _end_peer(
            conn, row, status="expired", event_type="peer.expired", now=now,
            attrs={"expires_at": validation.rfc3339(row.expires_at)},
        ))
    return tuple(events)


async def rotate_peer_key(
    conn: AsyncConnection, tenant_id: str, peer_id: str, *, public_key: str | None,
    now: datetime, actor: str,
) -> Outcome[Peer]:
    seen, tenant, row = await _lock_for_change(conn, tenant_id, peer_id)
    if row.status != "active":
        raise PeerNotActive(f"peer {peer_id} is {row.status}; only active peers can rotate keys",
                            peer_status=row.status)
    if tenant.status is not TenantStatus.VERIFIED:
        raise TenantNotVerified(f"tenant is {tenant.status.value}; keys cannot be rotated now",
                                tenant_status=tenant.status.value)
    if row.public_key != seen.public_key:
        # A rotation replaces the key the caller knew; another request replaced it first.
        raise ConcurrentChange(
            f"peer {peer_id}'s key was rotated by another request while this one waited; "
            "fetch the peer and rotate again if a new key is still needed"
        )
    pair = None if public_key else keys.generate_key_pair()
    new_key = public_key or (pair.public_key if pair else "")
    await _ensure_key_unused(conn, new_key)
    await _claim_public_key(conn, new_key, peer_id, now)
    await conn.execute(update(public_keys).where(public_keys.c.public_key == row.public_key)
                       .values(retired_at=now))
    await conn.execute(update(peers).where(peers.c.id == peer_id)
                       .values(public_key=new_key, key_rotated_at=now))
    ips = (await addresses.addresses_of(conn, [peer_id]))[peer_id]
    peer = replace(_peer(row, ips), public_key=new_key, key_rotated_at=now,
                   private_key=pair.private_key if pair else None)
    event = Event("peer.key_rotated", {
        "peer_id": peer_id, "tenant_id": tenant_id, "old_public_key": row.public_key,
        "public_key": new_key, "actor": actor, "key_origin": "server" if pair else "client",
    })
    return Outcome(peer, (event,))
