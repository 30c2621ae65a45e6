"""The data plane component: reconciler, collector and egress on one interface, one feed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from gateway.dataplane.feed import DesiredChangeSource, DesiredStateSource, ObservationSink
from gateway.dataplane.unusable import UnusableKeyFilter
from gateway.egress.plan import EgressPlan
from gateway.egress.ruleset import Policy
from gateway.egress.sync import EgressSync
from gateway.settings import WireGuardSettings
from gateway.wireguard.backend import BackendError, InterfaceSpec, PeerSpec, WireGuardBackend
from gateway.wireguard.collector import Collector, CollectorSnapshot
from gateway.wireguard.netlink import KernelBackend
from gateway.wireguard.off import NullBackend
from gateway.wireguard.plan import DesiredChanges
from gateway.wireguard.reconciler import Reconciler
from gateway.wireguard.sessions import REJECT_AFTER_TIME, SessionEvent, SessionTracker
from gateway.wireguard.userspace import UserspaceBackend
from provisioning.addresses import Network, gateway_interface

log = structlog.get_logger("vpngw.dataplane")

# (component, ok, detail) for /readyz or the agent's interface report.
OnStatus = Callable[[str, bool, str], None]


def make_backend(ws: WireGuardSettings, *, interface: str | None = None) -> WireGuardBackend:
    name = interface or ws.interface
    if ws.backend == "userspace":
        return UserspaceBackend.managed(
            interface=name,
            binary=ws.wireguard_go,
            socket_dir=Path(ws.socket_dir),
            keep_daemon=ws.daemon_on_stop == "keep",
        )
    if ws.backend == "kernel":
        return KernelBackend(interface=name)
    return NullBackend()


def interface_spec(
    ws: WireGuardSettings,
    private_key: bytes,
    pools: Sequence[Network],
    *,
    interface: str | None = None,
    listen_port: int | None = None,
) -> InterfaceSpec:
    return InterfaceSpec(
        name=interface or ws.interface,
        private_key=private_key,
        listen_port=ws.listen_port if listen_port is None else listen_port,
        addresses=tuple(gateway_interface(net) for net in pools),
        mtu=ws.mtu,
        fwmark=ws.fwmark or None,
    )


def egress_policy(
    plan: EgressPlan, *, wireguard_interface: str, pools: Sequence[Network]
) -> Policy:
    return Policy(
        egress=plan.egress,
        wireguard_interface=wireguard_interface,
        egress_interface=plan.interface,
        gateway_addresses=tuple(str(net.network_address + 1) for net in pools),
    )


class DataPlane:
    """Desired peers from `source` onto the interface; what the interface shows into `sink`."""

    def __init__(
        self,
        *,
        backend: WireGuardBackend,
        interface: InterfaceSpec,
        source: DesiredStateSource,
        sink: ObservationSink,
        egress: EgressSync | None = None,
        reconcile_interval: float = 30.0,
        collect_interval: float = 10.0,
        session_grace: timedelta = timedelta(seconds=30),
        session_silence: timedelta = REJECT_AFTER_TIME,
        clock: Callable[[], datetime],
        on_status: OnStatus = lambda component, ok, detail: None,
        label: str = "wireguard",
    ) -> None:
        self.backend = backend
        self.egress = egress
        self._sink = sink
        self._clock = clock
        self._on_status = on_status
        self._label = label
        self._collect_interval = collect_interval
        self._grace = session_grace
        self._silence = session_silence
        self._writes: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._source = source
        # Looked up once: a runtime protocol check costs more than the pass it guards.
        self._source_changes = (
            source.desired_changes if isinstance(source, DesiredChangeSource) else None
        )
        self._usable = UnusableKeyFilter(interface.private_key)
        self.reconciler = Reconciler(
            backend=backend,
            interface=interface,
            load_desired=self._desired_peers,
            load_changes=self._desired_changes if self._source_changes else None,
            interval=reconcile_interval,
            clock=clock,
            follow_peers=egress.sync if egress else None,
        )
        self.collector: Collector | None = None

    async def _desired_peers(self) -> list[PeerSpec]:
        return self._usable(await self._source.desired_peers())

    async def _desired_changes(self) -> DesiredChanges | None:
        assert self._source_changes is not None
        changed = await self._source_changes()
        if changed is None:
            return None
        return DesiredChanges(put=tuple(self._usable(changed.put)), gone=changed.gone)

    def wake(self) -> None:
        """The desired state changed: reconcile now."""
        self.reconciler.wake()

    def _durably(self, work: Coroutine[Any, Any, None]) -> Awaitable[None]:
        """Run a sink write to its end even if the loop calling it is cancelled."""
        task = asyncio.ensure_future(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return asyncio.shield(task)

    async def _on_events(self, events: Sequence[SessionEvent]) -> None:
        await self._durably(self._sink.sessions(events))

    async def _on_state(self, snapshot: CollectorSnapshot) -> None:
        await self._durably(self._sink.peer_status(snapshot))

    async def start(self) -> None:
        """Configure the interface (before readiness), then reconcile and collect forever."""
        if isinstance(self.backend, UserspaceBackend):
            self.backend.add_restart_listener(self.reconciler.wake_full)
        try:
            result = await self.reconciler.reconcile()
            log.info(
                "interface reconciled",
                added=len(result.applied.adds),
                updated=len(result.applied.updates),
                removed=len(result.applied.removals),
            )
        except BackendError as exc:
            # Not fatal: the feed keeps running, the status says why, the reconciler retries.
            log.error("interface not ready; retrying in the background", error=str(exc))
        self.report()
        saved = await self._sink.saved_sessions()
        self.collector = Collector(
            backend=self.backend,
            tracker=SessionTracker.from_dict(saved, grace=self._grace,
                                            silence=self._silence),
            on_events=self._on_events,
            on_state=self._on_state,
            interval=self._collect_interval,
            clock=self._clock,
        )
        self._tasks = [
            asyncio.create_task(self.reconciler.run(), name="reconciler"),
            asyncio.create_task(self.collector.run(), name="collector"),
            asyncio.create_task(self._watch(), name="wireguard-status"),
        ]

    async def stop(self, *, remove_egress: bool = False) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
        if self.egress is not None and remove_egress:
            await self.egress.remove()
        # Open sessions are not ended here: they end when their handshake goes stale,
        # which the next start will notice from the saved tracker.
        await self.backend.close()

    async def flush(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    def report(self) -> None:
        status = self.reconciler.status
        self._on_status("wireguard", status.ok, status.reason or f"{self._label} interface in sync")
        if self.egress is not None:
            self._on_status("egress", self.egress.status.ok, self.egress.status.detail)

    async def _watch(self) -> None:
        while True:
            self.report()
            await asyncio.sleep(0.5)
