"""Keeps the interface's peers equal to the desired set: on demand, periodically, after resets."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from gateway.wireguard.backend import (
    BackendError,
    BackendUnavailable,
    InterfaceDump,
    InterfaceSpec,
    PeerChanges,
    PeerRejected,
    PeerSpec,
    WireGuardBackend,
)
from gateway.wireguard.keys import public_key_of, to_base64
from gateway.wireguard.plan import DesiredChanges, plan_changed, plan_changes, plan_delta

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
LoadDesired = Callable[[], Awaitable[Sequence[PeerSpec]]]
# The desired peers changed since the last load (of either kind); None: load them whole.
LoadChanges = Callable[[], Awaitable[DesiredChanges | None]]
# Brings state that follows the peers (the egress map) in line, in the same pass.
FollowPeers = Callable[[Sequence[PeerSpec]], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ReconcilerStatus:
    """For /readyz: `ok` once the last pass reached the interface, else why not.

    Peers the backend refused are reported in `reason` and `rejected_peers` but do not
    make the gateway unready: every other peer is being served.
    """

    ok: bool
    reason: str | None = None
    last_success: datetime | None = None
    consecutive_failures: int = 0
    rejected_peers: int = 0


@dataclass(frozen=True)
class ReconcileResult:
    applied: PeerChanges
    rejected: tuple[bytes, ...] = ()


class Reconciler:
    """Desired peers (from `load_desired`) versus the backend's dump, healed by minimal changes.

    A full pass dumps the interface and compares; it runs first, every `interval`, after
    any failure and when asked (`wake_full`, e.g. after a daemon restart). A pass woken by
    a commit only applies the difference between the desired set the last pass left on the
    interface and the new one: no dump. With `load_changes` that difference comes from the
    source (the peers changed since its last load), so such a pass costs O(changes); without
    it, or when the source answers None, the whole desired set is loaded and compared.
    """

    def __init__(
        self,
        *,
        backend: WireGuardBackend,
        interface: InterfaceSpec,
        load_desired: LoadDesired,
        load_changes: LoadChanges | None = None,
        interval: float = 30.0,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
        follow_peers: FollowPeers | None = None,
    ) -> None:
        self._backend = backend
        self._follow_peers = follow_peers
        self._interface = interface
        self._public_key = public_key_of(interface.private_key)
        self._load_desired = load_desired
        self._load_changes = load_changes
        self._interval = interval
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._clock = clock
        self._sleep = sleep
        self._wake = asyncio.Event()
        # Timing spans for the applied log line: the first wake not yet served, and when
        # the pass began and its desired peers were loaded (monotonic seconds).
        self._woken_at: float | None = None
        self._pass_began = 0.0
        self._loaded_at = 0.0
        # Serialises passes when a caller reconciles directly while run() is active.
        self._lock = asyncio.Lock()
        self._interface_ready = False
        # What the last successful pass left on the interface; None: unknown, dump first.
        self._applied: dict[bytes, PeerSpec] | None = None
        # Desired peers the backend refused: not in `_applied`, retried by every pass.
        self._rejected: dict[bytes, PeerSpec] = {}
        self._full_due = True
        self._status = ReconcilerStatus(ok=False, reason="not reconciled yet")

    @property
    def status(self) -> ReconcilerStatus:
        return self._status

    def wake(self) -> None:
        """Ask for a pass soon (after a provisioning commit)."""
        if self._woken_at is None:
            self._woken_at = time.monotonic()
        self._wake.set()

    def wake_full(self) -> None:
        """Ask for a full pass soon (the interface may have lost state, e.g. a restart)."""
        self._full_due = True
        self._wake.set()

    async def reconcile(self, *, full: bool = True) -> ReconcileResult:
        """One pass; raises `BackendError` when the interface cannot be brought in line.

        `full=False` applies only the difference from the last pass when that is known.
        """
        async with self._lock:
            woken_at, self._woken_at = self._woken_at, None
            self._pass_began = self._loaded_at = time.monotonic()
            if woken_at is not None:
                self._pass_began = woken_at  # a commit wake's span starts at the wake
            try:
                if full or self._applied is None:
                    result = await self._reconcile()
                else:
                    result = await self._reconcile_delta()
            except BackendError:
                # Whatever broke, re-assert the interface itself and dump on the next pass.
                self._interface_ready = False
                self._applied = None
                raise
        rejected = len(result.rejected)
        self._status = ReconcilerStatus(
            ok=True,
            reason=f"{rejected} peer(s) rejected by the backend" if rejected else None,
            last_success=self._clock(),
            rejected_peers=rejected,
        )
        return result

    async def run(self) -> None:
        """Reconcile forever: on `wake()`, every `interval`, with backoff while failing."""
        failures = 0
        while True:
            self._wake.clear()
            full, self._full_due = self._full_due, False
            try:
                await self.reconcile(full=full)
                failures = 0
            except BackendError as exc:
                failures += 1
                self._failed(exc, failures)
            except Exception as exc:
                # A bug or the desired-state store failing must not stop healing for good.
                self._applied = None
                failures += 1
                self._failed(exc, failures)
                log.exception("wireguard.reconcile.crashed")
            if failures:
                await self._sleep(self._backoff(failures))
            elif not await self._wait(self._interval):
                self._full_due = True  # the interval passed without a wake: the safety net

    def _backoff(self, failures: int) -> float:
        return float(min(self._initial_backoff * 2 ** (failures - 1), self._max_backoff))

    def _failed(self, exc: Exception, failures: int) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self._status = ReconcilerStatus(
            ok=False,
            reason=reason,
            last_success=self._status.last_success,
            consecutive_failures=failures,
        )
        log.warning(
            "wireguard.reconcile.failed",
            interface=self._interface.name,
            error=type(exc).__name__,
            reason=str(exc),
            failures=failures,
            retry_in=self._backoff(failures),
        )

    async def _wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if a wake cut it short."""
        sleeper = asyncio.ensure_future(self._sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            done, _pending = await asyncio.wait(
                {sleeper, waker}, return_when=asyncio.FIRST_COMPLETED
            )
            return waker in done
        finally:
            for task in (sleeper, waker):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _ensure_interface(self, why: str) -> None:
        log.info("wireguard.interface.ensure", interface=self._interface.name, why=why)
        await self._backend.ensure_interface(self._interface)
        self._interface_ready = True

    async def _current(self) -> InterfaceDump:
        if not self._interface_ready:
            await self._ensure_interface("first pass or after a failure")
        try:
            dump = await self._backend.dump()
        except BackendUnavailable:
            await self._ensure_interface("interface unreachable")
            return await self._backend.dump()
        if dump.public_key != self._public_key or dump.listen_port != self._interface.listen_port:
            # A restarted daemon or a recreated link comes back without key and port.
            await self._ensure_interface("interface lost its key or port")
            dump = await self._backend.dump()
        return dump

    async def _reconcile(self) -> ReconcileResult:
        dump = await self._current()
        wanted = await self._load_desired()
        self._loaded_at = time.monotonic()
        desired = {spec.public_key: spec for spec in wanted}
        result = await self._apply(desired, plan_changes(desired, dump.peers))
        if self._follow_peers is not None:
            await self._follow_peers(wanted)
        return result

    async def _reconcile_delta(self) -> ReconcileResult:
        assert self._applied is not None
        changed = None if self._load_changes is None else await self._load_changes()
        self._loaded_at = time.monotonic()
        if changed is not None:
            return await self._reconcile_changed(self._applied, changed)
        wanted = await self._load_desired()
        self._loaded_at = time.monotonic()
        desired = {spec.public_key: spec for spec in wanted}
        result = await self._apply(desired, plan_delta(self._applied, desired))
        if self._follow_peers is not None:
            await self._follow_peers(wanted)
        return result

    async def _reconcile_changed(
        self, applied: dict[bytes, PeerSpec], changed: DesiredChanges
    ) -> ReconcileResult:
        """Apply what the source says changed; `applied` is updated in place, not rebuilt."""
        put = dict(self._rejected)  # refused before: try again, unless no longer wanted
        for key in changed.gone:
            put.pop(key, None)
        for spec in changed.put:
            put[spec.public_key] = spec
        gone = [key for key in changed.gone if key not in put]
        result = await self._apply_changes(plan_changed(applied, put.values(), gone))
        rejected = set(result.rejected)
        for key in gone:
            applied.pop(key, None)
            self._rejected.pop(key, None)
        for key, spec in put.items():
            if key in rejected:
                applied.pop(key, None)
                self._rejected[key] = spec
            else:
                applied[key] = spec
                self._rejected.pop(key, None)
        if self._follow_peers is not None:
            # The egress map follows the whole set (O(peers), only with egress on).
            await self._follow_peers([*applied.values(), *self._rejected.values()])
        return result

    async def _apply(self, desired: dict[bytes, PeerSpec], changes: PeerChanges) -> ReconcileResult:
        result = await self._apply_changes(changes)
        # What is on the interface now: the desired set less what the backend refused
        # (a refused peer is retried by the next pass, as it would be after a dump).
        self._rejected = {k: desired[k] for k in result.rejected if k in desired}
        if self._rejected:
            desired = {k: v for k, v in desired.items() if k not in self._rejected}
        self._applied = desired
        return result

    async def _apply_changes(self, changes: PeerChanges) -> ReconcileResult:
        if changes.empty:
            return ReconcileResult(applied=changes)
        try:
            await self._backend.apply(changes)
        except PeerRejected:
            return await self._apply_one_by_one(changes)
        self._log_applied(changes)
        return ReconcileResult(applied=changes)

    async def _apply_one_by_one(self, changes: PeerChanges) -> ReconcileResult:
        # One bad peer must not keep every other tenant's change off the interface.
        applied: list[PeerChanges] = []
        rejected: list[bytes] = []
        for single in changes.singles():
            try:
                await self._backend.apply(single)
            except PeerRejected as exc:
                (key,) = single.public_keys
                rejected.append(key)
                log.warning("wireguard.peer.rejected", public_key=to_base64(key), reason=str(exc))
            else:
                applied.append(single)
        merged = PeerChanges(
            adds=tuple(s for c in applied for s in c.adds),
            updates=tuple(s for c in applied for s in c.updates),
            removals=tuple(k for c in applied for k in c.removals),
        )
        self._log_applied(merged)
        return ReconcileResult(applied=merged, rejected=tuple(rejected))

    def _log_applied(self, changes: PeerChanges) -> None:
        now = time.monotonic()
        log.info(
            "wireguard.reconcile.applied",
            interface=self._interface.name,
            adds=len(changes.adds),
            updates=len(changes.updates),
            removals=len(changes.removals),
            # Where a commit wake's time goes: from the wake (or the pass's start) to the
            # desired peers loaded, and from there to the backend having applied them.
            load_ms=round(max(0.0, self._loaded_at - self._pass_began) * 1000, 1),
            apply_ms=round(max(0.0, now - self._loaded_at) * 1000, 1),
        )
