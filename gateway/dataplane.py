"""Wires the WireGuard backend, reconciler and collector to the database and the audit log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from sqlalchemy import delete, insert, select, update

from gateway.audit.canonical import format_time
from gateway.audit.schema import session_state
from gateway.egress.nft import Forwarding, Nft
from gateway.egress.plan import EgressPlan
from gateway.egress.ruleset import Policy
from gateway.egress.sync import EgressSync
from gateway.http import appkeys
from gateway.settings import Settings
from gateway.wireguard.backend import BackendError, InterfaceSpec, PeerSpec, WireGuardBackend
from gateway.wireguard.collector import Collector, CollectorSnapshot, PeerStatus
from gateway.wireguard.keys import from_base64, to_base64
from gateway.wireguard.netlink import KernelBackend
from gateway.wireguard.off import NullBackend
from gateway.wireguard.reconciler import Reconciler
from gateway.wireguard.sessions import (
    SessionEnded,
    SessionEvent,
    SessionRoamed,
    SessionStarted,
    SessionTracker,
)
from gateway.wireguard.userspace import UserspaceBackend
from provisioning.addresses import gateway_interface, host_prefix
from provisioning.events import Event
from provisioning.peers import desired_peers
from provisioning.schema import peer_status, peers, public_keys

log = structlog.get_logger("vpngw.dataplane")

TRACKER_ROW = "tracker"


def make_backend(settings: Settings) -> WireGuardBackend:
    ws = settings.wireguard
    if ws.backend == "userspace":
        return UserspaceBackend.managed(
            interface=ws.interface, binary=ws.wireguard_go, socket_dir=Path(ws.socket_dir)
        )
    if ws.backend == "kernel":
        return KernelBackend(interface=ws.interface)
    return NullBackend()


def interface_spec(settings: Settings, private_key: bytes) -> InterfaceSpec:
    ws = settings.wireguard
    return InterfaceSpec(
        name=ws.interface,
        private_key=private_key,
        listen_port=ws.listen_port,
        addresses=tuple(gateway_interface(net) for net in settings.pool_networks),
        mtu=ws.mtu,
        fwmark=ws.fwmark or None,
    )


def session_event(e: SessionEvent, *, peer_id: str, tenant_id: str, gateway_id: str) -> Event:
    """The audit event of section 5 for one collector observation."""
    common = {"peer_id": peer_id, "tenant_id": tenant_id, "gateway_id": gateway_id}
    if isinstance(e, SessionStarted):
        return Event(
            e.type,
            {**common, "endpoint": e.endpoint, "first_handshake": format_time(e.first_handshake)},
        )
    if isinstance(e, SessionRoamed):
        return Event(e.type, {**common, "endpoint": e.new_endpoint, "old_endpoint": e.old_endpoint})
    assert isinstance(e, SessionEnded)
    return Event(
        e.type,
        {
            **common,
            "endpoint": e.endpoint,
            "rx_bytes": e.rx_bytes,
            "tx_bytes": e.tx_bytes,
            "first_handshake": format_time(e.first_handshake),
            "last_handshake": format_time(e.last_handshake),
        },
    )


class DataPlane:
    """The app's view of the interface: desired peers in, session events out."""

    def __init__(
        self, app: web.Application, backend: WireGuardBackend, egress: EgressSync | None = None
    ) -> None:
        self.app = app
        self.backend = backend
        self.egress = egress
        self.settings = app[appkeys.SETTINGS]
        self.db = app[appkeys.DATABASE]
        self.clock = app[appkeys.CLOCK]
        self._writes: set[asyncio.Task[None]] = set()
        self._last_status: dict[bytes, PeerStatus] = {}
        ws = self.settings.wireguard
        self.reconciler = Reconciler(
            backend=backend,
            interface=interface_spec(self.settings, app[appkeys.KEYS].wireguard_private_raw),
            load_desired=self.load_desired,
            interval=ws.reconcile_interval_seconds,
            clock=self.clock.now,
            follow_peers=egress.sync if egress else None,
        )
        self.collector: Collector | None = None

    async def load_desired(self) -> list[PeerSpec]:
        async with self.db.read() as conn:
            found = await desired_peers(conn, now=self.clock.now())
        keepalive = None  # the client keeps the NAT open; the gateway need not
        return [
            PeerSpec(
                public_key=from_base64(p.public_key),
                allowed_ips=tuple(host_prefix(ip) for ip in p.tunnel_ips),
                preshared_key=from_base64(p.preshared_key) if p.preshared_key else None,
                persistent_keepalive=keepalive,
            )
            for p in found
        ]

    def _durably(self, work: Coroutine[Any, Any, None]) -> Awaitable[None]:
        """Run a database write to its end even if the loop calling it is cancelled."""
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return asyncio.shield(task)

    async def _owners(self, keys: Sequence[bytes]) -> dict[bytes, tuple[str, str]]:
        """public key → (peer id, tenant id), including keys rotated away since."""
        if not keys:
            return {}
        b64 = [to_base64(k) for k in keys]
        async with self.db.read() as conn:
            rows = (
                await conn.execute(
                    select(public_keys.c.public_key, peers.c.id, peers.c.tenant_id)
                    .join(peers, peers.c.id == public_keys.c.peer_id)
                    .where(public_keys.c.public_key.in_(b64))
                )
            ).all()
        return {from_base64(r.public_key): (r.id, r.tenant_id) for r in rows}

    async def on_events(self, events: Sequence[SessionEvent]) -> None:
        owners = await self._owners(sorted({e.public_key for e in events}))
        gateway_id = self.settings.network.gateway_id
        audit: list[Event] = []
        for e in events:
            owner = owners.get(e.public_key)
            if owner is None:  # a key the gateway never issued; the reconciler removes it
                log.warning("session of unknown key ignored", type=e.type)
                continue
            audit.append(
                session_event(e, peer_id=owner[0], tenant_id=owner[1], gateway_id=gateway_id)
            )
        if audit:
            await self._durably(self.app[appkeys.COMMANDS].record(audit))

    async def on_state(self, snapshot: CollectorSnapshot) -> None:
        await self._durably(self._save_state(snapshot))

    async def _save_state(self, snapshot: CollectorSnapshot) -> None:
        changed = {k: s for k, s in snapshot.peers.items() if self._last_status.get(k) != s}
        owners = await self._owners(list(changed))
        async with self.db.write() as conn:
            state = json.dumps(snapshot.sessions, sort_keys=True)
            updated = await conn.execute(
                update(session_state)
                .where(session_state.c.public_key == TRACKER_ROW)
                .values(state=state)
            )
            if updated.rowcount == 0:
                await conn.execute(
                    insert(session_state).values(public_key=TRACKER_ROW, state=state)
                )
            rows = [
                {
                    "peer_id": owners[key][0],
                    "latest_handshake": status.latest_handshake,
                    "endpoint": str(status.endpoint) if status.endpoint else None,
                    "rx_bytes": status.rx_bytes,
                    "tx_bytes": status.tx_bytes,
                    "connected": int(status.connected),
                    "observed_at": snapshot.at,
                }
                for key, status in changed.items()
                if key in owners
            ]
            # Two statements for any number of peers: a 10,000-peer change stays cheap.
            for start in range(0, len(rows), 500):
                chunk = rows[start : start + 500]
                await conn.execute(
                    delete(peer_status).where(
                        peer_status.c.peer_id.in_([r["peer_id"] for r in chunk])
                    )
                )
                await conn.execute(insert(peer_status), chunk)
        self._last_status = dict(snapshot.peers)

    async def load_tracker(self) -> SessionTracker:
        grace = timedelta(seconds=self.settings.wireguard.session_grace_seconds)
        async with self.db.read() as conn:
            saved = await conn.scalar(
                select(session_state.c.state).where(session_state.c.public_key == TRACKER_ROW)
            )
        return SessionTracker.from_dict(json.loads(saved) if saved else {}, grace=grace)

    async def flush(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


def dataplane_ctx(
    backend: WireGuardBackend | None,
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        settings = app[appkeys.SETTINGS]
        runtime, clock = app[appkeys.RUNTIME], app[appkeys.CLOCK]
        if settings.wireguard.backend == "off" and backend is None:
            runtime.set("wireguard", ok=True, detail="off (API only)", now=clock.now())
            yield
            return
        plan = app[appkeys.EGRESS]
        egress = (
            EgressSync(
                policy=egress_policy(settings, plan),
                nft=Nft(),
                forwarding=Forwarding(),
                full_check_seconds=settings.wireguard.reconcile_interval_seconds,
            )
            if plan is not None
            else None
        )
        plane = DataPlane(app, backend or make_backend(settings), egress)
        if egress is not None:
            _egress_gauges(app, egress)
        app[appkeys.DATAPLANE] = plane
        commands = app[appkeys.COMMANDS]
        sequencer = app[appkeys.SEQUENCER]

        def wake_all() -> None:
            sequencer.wake()
            plane.reconciler.wake()

        commands.set_on_commit(wake_all)
        if isinstance(plane.backend, UserspaceBackend):
            plane.backend.add_restart_listener(plane.reconciler.wake_full)
        # The interface is configured before /readyz says ready.
        try:
            result = await plane.reconciler.reconcile()
            log.info(
                "interface reconciled",
                added=len(result.applied.adds),
                updated=len(result.applied.updates),
                removed=len(result.applied.removals),
            )
        except BackendError as exc:
            # Not fatal: the API keeps serving, /readyz says why, the reconciler retries.
            log.error("interface not ready; retrying in the background", error=str(exc))
        _report(app, plane)
        plane.collector = Collector(
            backend=plane.backend,
            tracker=await plane.load_tracker(),
            on_events=plane.on_events,
            on_state=plane.on_state,
            interval=settings.wireguard.collect_interval_seconds,
            clock=clock.now,
        )
        tasks = [
            asyncio.create_task(plane.reconciler.run(), name="reconciler"),
            asyncio.create_task(plane.collector.run(), name="collector"),
            asyncio.create_task(_watch(app, plane), name="wireguard-status"),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await plane.flush()
        if egress is not None and settings.egress.remove_on_stop:
            await egress.remove()
        # Open sessions are not ended here: they end when their handshake goes stale,
        # which the next start of the service will notice from the saved tracker.
        await plane.backend.close()

    return ctx


def egress_policy(settings: Settings, plan: EgressPlan) -> Policy:
    return Policy(
        egress=plan.egress,
        wireguard_interface=settings.wireguard.interface,
        egress_interface=plan.interface,
        gateway_addresses=tuple(str(net.network_address + 1) for net in settings.pool_networks),
    )


def _egress_gauges(app: web.Application, egress: EgressSync) -> None:
    gateway = app[appkeys.SETTINGS].network.gateway_id
    gauges = app[appkeys.METRICS].gauges
    gauges[f'egress_peers_mapped{{gateway="{gateway}"}}'] = lambda: float(
        egress.status.peers_mapped
    )
    gauges[f'egress_blocks_free{{gateway="{gateway}"}}'] = lambda: float(egress.status.blocks_free)


def _report(app: web.Application, plane: DataPlane) -> None:
    status = plane.reconciler.status
    detail = status.reason or f"{plane.settings.wireguard.backend} interface in sync"
    now = app[appkeys.CLOCK].now()
    runtime = app[appkeys.RUNTIME]
    runtime.set("wireguard", ok=status.ok, detail=detail, now=now)
    if plane.egress is not None:
        runtime.set("egress", ok=plane.egress.status.ok, detail=plane.egress.status.detail, now=now)


async def _watch(app: web.Application, plane: DataPlane) -> None:
    while True:
        _report(app, plane)
        await asyncio.sleep(0.5)
