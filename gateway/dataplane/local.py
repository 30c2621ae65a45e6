"""The in-process feed of `vpngw serve`: desired peers from this database, observations into it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert

from gateway.audit.schema import session_state
from gateway.dataplane.audit_events import session_event
from gateway.dataplane.feed import SavedSessions
from gateway.db import Database
from gateway.wireguard.backend import PeerSpec
from gateway.wireguard.collector import CollectorSnapshot, PeerStatus
from gateway.wireguard.keys import from_base64, to_base64
from gateway.wireguard.plan import DesiredChanges
from gateway.wireguard.sessions import SessionEvent
from provisioning.addresses import host_prefix
from provisioning.events import Event
from provisioning.gateways import PeerEntry, desired_state
from provisioning.schema import peer_status, peers, public_keys

log = structlog.get_logger("vpngw.dataplane")

TRACKER_ROW = "tracker"
FULL_READ_EVERY = timedelta(seconds=60)
Record = Callable[[list[Event]], Awaitable[None]]


def peer_spec(p: PeerEntry) -> PeerSpec:
    # No keepalive from the gateway: the client keeps the NAT open.
    return PeerSpec(
        public_key=from_base64(p.public_key),
        allowed_ips=tuple(host_prefix(ip) for ip in p.tunnel_ips),
        preshared_key=from_base64(p.preshared_key) if p.preshared_key else None,
        persistent_keepalive=None,
    )


class LocalFeed:
    """Both halves of the feed for the gateway `gateway_id` served by this very process."""

    def __init__(
        self, *, db: Database, clock: Callable[[], datetime], record: Record, gateway_id: str
    ) -> None:
        self._db = db
        self._clock = clock
        self._record = record
        self._gateway_id = gateway_id
        self._last_status: dict[bytes, PeerStatus] = {}
        # The desired peers as of `_revision` of this gateway, kept between passes: after
        # the first load a pass reads only the peers changed since (the agents' delta, see
        # provisioning.gateways.desired_state), so a commit wake costs O(changes), not a
        # rebuild of every peer (which took ~0.5 s at 10,000 peers), and through
        # `desired_changes` hands on only those peers (a pass over all 10,000 cost ~40 ms).
        # A full read now and then as well: peers whose expiry time passed but that the
        # expiry job has not marked yet, or rows changed behind the application's back. It
        # too hands on only what differs from the kept peers, and builds a spec (parsing
        # its networks: most of a full read's cost) only for an entry that changed.
        self._entries: dict[str, PeerEntry] = {}
        self._specs: dict[str, PeerSpec] = {}
        self._revision = 0
        self._full_read_at: datetime | None = None

    async def desired_peers(self) -> list[PeerSpec]:
        await self.desired_changes()
        return list(self._specs.values())

    async def desired_changes(self) -> DesiredChanges:
        now = self._clock()
        full = self._full_read_at is None or now - self._full_read_at >= FULL_READ_EVERY
        async with self._db.read() as conn:
            state = await desired_state(
                conn, self._gateway_id, since=0 if full else self._revision, now=now
            )
        self._revision = state.revision
        gone: list[bytes] = []
        removed: Iterable[str] = state.removed
        if state.full:  # asked for, or a restored database (its revision went back)
            self._full_read_at = now
            wanted = {entry.peer_id for entry in state.peers}
            removed = [peer_id for peer_id in self._entries if peer_id not in wanted]
        for peer_id in removed:
            self._entries.pop(peer_id, None)
            before = self._specs.pop(peer_id, None)
            if before is not None:
                gone.append(before.public_key)
        put: list[PeerSpec] = []
        for entry in state.peers:
            if self._entries.get(entry.peer_id) == entry:
                continue
            spec = peer_spec(entry)
            before = self._specs.get(entry.peer_id)
            if before is not None and before.public_key != spec.public_key:
                gone.append(before.public_key)  # the key was rotated
            self._entries[entry.peer_id] = entry
            self._specs[entry.peer_id] = spec
            put.append(spec)
        return DesiredChanges(put=tuple(put), gone=tuple(gone))

    async def _owners(self, keys: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        """public key → (peer id, tenant id), including keys rotated away since."""
        if not keys:
            return {}
        b64 = [to_base64(k) for k in keys]
        async with self._db.read() as conn:
            rows = (
                await conn.execute(
                    select(public_keys.c.public_key, peers.c.id, peers.c.tenant_id)
                    .join(peers, peers.c.id == public_keys.c.peer_id)
                    .where(public_keys.c.public_key.in_(b64))
                )
            ).all()
        return {from_base64(r.public_key): (r.id, r.tenant_id) for r in rows}

    async def sessions(self, events: Sequence[SessionEvent]) -> None:
        owners = await self._owners(sorted({e.public_key for e in events}))
        audit: list[Event] = []
        for e in events:
            owner = owners.get(e.public_key)
            if owner is None:  # a key the gateway never issued; the reconciler removes it
                log.warning("session of unknown key ignored", type=e.type)
                continue
            audit.append(
                session_event(e, peer_id=owner[0], tenant_id=owner[1], gateway_id=self._gateway_id)
            )
        if audit:
            await self._record(audit)

    async def peer_status(self, snapshot: CollectorSnapshot) -> None:
        last = self._last_status
        # The collector hands back the very same status for an unchanged peer: `is` first.
        changed = {k: s for k, s in snapshot.peers.items()
                   if (was := last.get(k)) is not s and was != s}
        owners = await self._owners(list(changed))
        async with self._db.write() as conn:
            state = json.dumps(snapshot.sessions, sort_keys=True)
            await conn.execute(
                _upsert(conn, session_state).values(public_key=TRACKER_ROW, state=state)
            )
            rows = [
                status_row(owners[key][0], status, snapshot.at)
                for key, status in changed.items()
                if key in owners
            ]
            await write_peer_status(conn, rows)
        self._last_status = dict(snapshot.peers)

    async def saved_sessions(self) -> SavedSessions:
        async with self._db.read() as conn:
            saved = await conn.scalar(
                select(session_state.c.state).where(session_state.c.public_key == TRACKER_ROW)
            )
        loaded: SavedSessions = json.loads(saved) if saved else {}
        return loaded


def status_row(peer_id: str, status: PeerStatus, at: datetime) -> dict[str, object]:
    return {
        "peer_id": peer_id,
        "latest_handshake": status.latest_handshake,
        "endpoint": str(status.endpoint) if status.endpoint else None,
        "rx_bytes": status.rx_bytes,
        "tx_bytes": status.tx_bytes,
        "connected": int(status.connected),
        "observed_at": at,
    }


def _upsert(conn: AsyncConnection, table: Table) -> Insert:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE: a row written at the same moment by
    another process running the data plane on this database (two control planes on one
    PostgreSQL, or a control plane beside an in-process data plane) is overwritten, where
    an update-else-insert or a delete-then-insert fails on the duplicate key."""
    stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)
    keys = [c.name for c in table.primary_key.columns]
    return stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
    )


async def write_peer_status(conn: AsyncConnection, rows: list[dict[str, object]]) -> None:
    """One statement per 500 peers: a 10,000-peer change stays cheap.

    One row per peer (the last given), in peer id order: PostgreSQL refuses to upsert a
    row twice in one statement, and two writers locking rows in one order cannot deadlock.
    """
    latest = {str(r["peer_id"]): r for r in rows}
    ordered = [latest[peer_id] for peer_id in sorted(latest)]
    for start in range(0, len(ordered), 500):
        await conn.execute(_upsert(conn, peer_status), ordered[start : start + 500])
