"""Peer diff planning and the reconciler loop, against an in-memory backend."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.wireguard.backend import (
    BackendUnavailable,
    InterfaceDump,
    InterfaceSpec,
    PeerChanges,
    PeerRejected,
    PeerSpec,
    PeerState,
)
from gateway.wireguard.keys import preshared_key_digest
from gateway.wireguard.off import NullBackend
from gateway.wireguard.plan import DesiredChanges, plan_changes
from gateway.wireguard.reconciler import Reconciler

K1, K2, K3, K4 = (bytes([n]) * 32 for n in (0xA1, 0xB2, 0xC3, 0xD4))
PSK = bytes([0x33]) * 32
SPEC = InterfaceSpec(
    name="wgt0", private_key=bytes(range(1, 33)), listen_port=51820, addresses=("10.100.0.1/24",)
)
T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


def state(spec: PeerSpec) -> PeerState:
    return PeerState(
        public_key=spec.public_key,
        allowed_ips=spec.allowed_ips,
        preshared_key_digest=spec.preshared_key_digest,
        persistent_keepalive=spec.persistent_keepalive,
    )


# --- plan -------------------------------------------------------------------------------


def test_in_sync_plans_nothing() -> None:
    desired = {K1: PeerSpec(K1, ("10.100.0.2/32", "fd00::2/128"), PSK, 25)}
    actual = [state(desired[K1])]
    assert plan_changes(desired, actual).empty


def test_allowed_ip_order_and_spelling_do_not_matter() -> None:
    desired = {K1: PeerSpec(K1, ("fd00:0:0::2/128", "10.100.0.2/32"))}
    actual = [PeerState(K1, allowed_ips=("10.100.0.2/32", "fd00::2/128"))]
    assert plan_changes(desired, actual).empty


def test_missing_peers_are_added_and_unknown_ones_removed() -> None:
    desired = {K1: PeerSpec(K1, ("10.100.0.2/32",)), K2: PeerSpec(K2, ("10.100.0.3/32",))}
    actual = [state(desired[K1]), PeerState(K3, allowed_ips=("10.100.0.9/32",))]
    changes = plan_changes(desired, actual)
    assert changes == PeerChanges(adds=(desired[K2],), removals=(K3,))


@pytest.mark.parametrize(
    ("actual", "why"),
    [
        (PeerState(K1, ("10.100.0.2/32",), preshared_key_digest(PSK), None, None), "ip added"),
        (PeerState(K1, ("10.100.0.2/32", "10.100.0.3/32", "10.100.0.4/32")), "ip removed"),
        (PeerState(K1, ("10.100.0.2/32", "10.100.0.3/32")), "psk missing"),
        (
            PeerState(K1, ("10.100.0.2/32", "10.100.0.3/32"), preshared_key_digest(K4)),
            "psk differs",
        ),
        (
            PeerState(
                K1,
                ("10.100.0.2/32", "10.100.0.3/32"),
                preshared_key_digest(PSK),
                persistent_keepalive=15,
            ),
            "keepalive differs",
        ),
    ],
)
def test_drifted_peer_is_updated(actual: PeerState, why: str) -> None:
    desired = {K1: PeerSpec(K1, ("10.100.0.2/32", "10.100.0.3/32"), PSK)}
    assert plan_changes(desired, [actual]) == PeerChanges(updates=(desired[K1],)), why


def test_psk_present_but_not_wanted_is_updated() -> None:
    desired = {K1: PeerSpec(K1, ("10.100.0.2/32",))}
    actual = [PeerState(K1, ("10.100.0.2/32",), preshared_key_digest(PSK))]
    assert plan_changes(desired, actual).updates == (desired[K1],)


def test_empty_both_sides() -> None:
    assert plan_changes({}, []) == PeerChanges()


def test_singles_split_every_edit() -> None:
    changes = PeerChanges(adds=(PeerSpec(K1, ()),), updates=(PeerSpec(K2, ()),), removals=(K3,))
    assert [c.public_keys for c in changes.singles()] == [(K3,), (K2,), (K1,)]
    assert len(changes) == 3


# --- reconciler -------------------------------------------------------------------------


class FakeBackend(NullBackend):
    """NullBackend that counts calls and can be told to fail or to forget its interface."""

    def __init__(self) -> None:
        super().__init__()
        self.ensured = 0
        self.applied: list[PeerChanges] = []
        self.dump_failures: list[Exception] = []
        self.reject_keys: set[bytes] = set()

    async def ensure_interface(self, spec: InterfaceSpec) -> None:
        self.ensured += 1
        await super().ensure_interface(spec)

    async def dump(self) -> InterfaceDump:
        if self.dump_failures:
            raise self.dump_failures.pop(0)
        return await super().dump()

    async def apply(self, changes: PeerChanges) -> None:
        if self.reject_keys & set(changes.public_keys):
            raise PeerRejected("bad peer")
        self.applied.append(changes)
        await super().apply(changes)

    def reset(self) -> None:
        """What a restarted wireguard-go looks like: no key, no peers."""
        NullBackend.__init__(self)


class Desired:
    def __init__(self, *specs: PeerSpec) -> None:
        self.specs = list(specs)

    async def __call__(self) -> Sequence[PeerSpec]:
        return self.specs


PEERS = tuple(PeerSpec(k, (f"10.100.0.{i}/32",)) for i, k in enumerate((K1, K2, K3), 2))


def reconciler(backend: FakeBackend, desired: Desired, **kwargs: object) -> Reconciler:
    return Reconciler(
        backend=backend,
        interface=SPEC,
        load_desired=desired,
        clock=lambda: T0,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_first_pass_ensures_interface_and_adds_all_in_one_apply() -> None:
    backend = FakeBackend()
    rec = reconciler(backend, Desired(*PEERS))
    assert not rec.status.ok
    result = await rec.reconcile()
    assert backend.ensured == 1
    assert backend.applied == [PeerChanges(adds=PEERS)]
    assert result.applied.adds == PEERS
    assert rec.status.ok and rec.status.last_success == T0
    assert (await rec.reconcile()).applied.empty
    assert backend.ensured == 1, "a healthy interface is not re-ensured"


async def test_drift_is_healed() -> None:
    backend = FakeBackend()
    rec = reconciler(backend, Desired(*PEERS))
    await rec.reconcile()
    intruder = PeerSpec(K4, ("10.100.0.99/32",))
    await NullBackend.apply(backend, PeerChanges(adds=(intruder,), removals=(K2,)))
    result = await rec.reconcile()
    assert result.applied == PeerChanges(adds=(PEERS[1],), removals=(K4,))
    assert {p.public_key for p in (await backend.dump()).peers} == {K1, K2, K3}


async def test_reset_interface_is_ensured_again_and_refilled() -> None:
    backend = FakeBackend()
    rec = reconciler(backend, Desired(*PEERS))
    await rec.reconcile()
    backend.reset()
    result = await rec.reconcile()
    assert backend.ensured == 2
    assert result.applied == PeerChanges(adds=PEERS)
    assert len((await backend.dump()).peers) == 3


async def test_unreachable_backend_is_ensured_then_dumped_again() -> None:
    backend = FakeBackend()
    rec = reconciler(backend, Desired(*PEERS))
    await rec.reconcile()
    backend.dump_failures.append(BackendUnavailable("socket gone"))
    await rec.reconcile()
    assert backend.ensured == 2


async def test_a_rejected_peer_does_not_block_the_others() -> None:
    backend = FakeBackend()
    backend.reject_keys = {K2}
    rec = reconciler(backend, Desired(*PEERS))
    with capture_logs() as logs:
        result = await rec.reconcile()
    assert result.rejected == (K2,)
    assert set(result.applied.adds) == {PEERS[0], PEERS[2]}
    # One tenant's bad peer must not make the whole gateway unready.
    assert rec.status.ok and rec.status.rejected_peers == 1
    assert rec.status.reason == "1 peer(s) rejected by the backend"
    rejected = [e for e in logs if e["event"] == "wireguard.peer.rejected"]
    assert rejected and rejected[0]["public_key"].startswith("srKy")


async def test_run_backs_off_on_backend_errors_and_recovers() -> None:
    backend = FakeBackend()
    backend.dump_failures = [BackendUnavailable("down")] * 6
    delays: list[float] = []
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) >= 4:
            enough.set()
            await asyncio.Event().wait()

    rec = reconciler(backend, Desired(*PEERS), sleep=sleep, initial_backoff=1.0, interval=30.0)
    with capture_logs() as logs:
        task = asyncio.create_task(rec.run())
        await enough.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Each failing pass needs two dumps (the retry after ensure_interface fails too).
    assert delays == [1.0, 2.0, 4.0, 30.0]
    failed = [e for e in logs if e["event"] == "wireguard.reconcile.failed"]
    assert [e["retry_in"] for e in failed] == [1.0, 2.0, 4.0]
    assert failed[0]["error"] == "BackendUnavailable" and failed[0]["reason"] == "down"
    assert failed[0]["log_level"] == "warning"
    assert rec.status.ok and rec.status.last_success == T0


async def test_status_reports_degraded_reason_while_failing() -> None:
    backend = FakeBackend()
    backend.dump_failures = [BackendUnavailable("socket missing")] * 100
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:
        stop.set()
        await asyncio.Event().wait()

    rec = reconciler(backend, Desired(*PEERS), sleep=sleep)
    with capture_logs():
        task = asyncio.create_task(rec.run())
        await stop.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    status = rec.status
    assert not status.ok
    assert status.reason == "BackendUnavailable: socket missing"
    assert status.last_success is None and status.consecutive_failures == 1


async def test_wake_cuts_the_interval_short() -> None:
    backend = FakeBackend()
    desired = Desired(PEERS[0])
    waiting = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waiting.set()
        await asyncio.sleep(3600)

    rec = reconciler(backend, desired, sleep=sleep)
    with capture_logs():
        task = asyncio.create_task(rec.run())
        await waiting.wait()
        waiting.clear()
        desired.specs.append(PEERS[1])
        rec.wake()
        await asyncio.wait_for(waiting.wait(), timeout=2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [c.adds for c in backend.applied] == [(PEERS[0],), (PEERS[1],)]


async def test_a_crashing_desired_source_does_not_kill_the_loop() -> None:
    backend = FakeBackend()
    calls = 0

    async def load() -> Sequence[PeerSpec]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")
        return PEERS

    done = asyncio.Event()

    async def sleep(seconds: float) -> None:
        if calls >= 2:
            done.set()
            await asyncio.Event().wait()

    rec = Reconciler(backend=backend, interface=SPEC, load_desired=load, sleep=sleep)
    with capture_logs() as logs:
        task = asyncio.create_task(rec.run())
        await asyncio.wait_for(done.wait(), timeout=2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert any(e["event"] == "wireguard.reconcile.crashed" for e in logs)
    assert len((await backend.dump()).peers) == 3
    assert rec.status.ok


# --- fast path: deltas on a commit wake, dumps on the interval ----------------------------


class CountingBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.dumps = 0

    async def dump(self) -> InterfaceDump:
        self.dumps += 1
        return await super().dump()


KEYS = tuple(bytes([n]) * 32 for n in range(0x40, 0x46))
spec_strategy = st.builds(
    lambda key, host, psk, keepalive: PeerSpec(
        key, (f"10.100.0.{host}/32",), PSK if psk else None, keepalive),
    st.sampled_from(KEYS), st.integers(2, 9), st.booleans(), st.sampled_from([None, 25]))


@settings(max_examples=80, deadline=None)
@given(steps=st.lists(st.lists(spec_strategy, max_size=5), min_size=1, max_size=8))
async def test_any_sequence_of_deltas_leaves_what_a_full_pass_would(
    steps: list[list[PeerSpec]],
) -> None:
    backend = CountingBackend()
    desired = Desired()
    rec = reconciler(backend, desired)
    await rec.reconcile()  # the first pass is full
    for step in steps:
        desired.specs = list({s.public_key: s for s in step}.values())
        await rec.reconcile(full=False)
    assert backend.dumps == 1, "delta passes never dump"
    # A full pass now finds nothing to change: the deltas left exactly the desired set.
    assert (await rec.reconcile()).applied.empty
    dumped = {p.public_key: p for p in (await backend.dump()).peers}
    assert dumped == {s.public_key: state(s) for s in desired.specs}


async def test_commit_wakes_apply_deltas_and_the_interval_dumps() -> None:
    backend = CountingBackend()
    desired = Desired(PEERS[0])
    slept = asyncio.Event()
    timeouts: list[asyncio.Event] = []

    async def sleep(seconds: float) -> None:
        slept.set()
        gate = asyncio.Event()
        timeouts.append(gate)
        await gate.wait()  # "the interval" passes only when the test says so

    rec = reconciler(backend, desired, sleep=sleep)
    with capture_logs():
        task = asyncio.create_task(rec.run())
        await slept.wait()
        assert backend.dumps == 1  # first pass: full
        for spec in PEERS[1:]:
            slept.clear()
            desired.specs.append(spec)
            rec.wake()
            await asyncio.wait_for(slept.wait(), timeout=2)
        assert backend.dumps == 1, "commit wakes apply the difference without a dump"
        slept.clear()
        timeouts[-1].set()  # the interval passes: a full pass with a dump
        await asyncio.wait_for(slept.wait(), timeout=2)
        assert backend.dumps == 2
        slept.clear()
        backend.reset()  # a restarted daemon: nothing on the interface
        rec.wake_full()
        await asyncio.wait_for(slept.wait(), timeout=2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert {p.public_key for p in (await backend.dump()).peers} == {K1, K2, K3}


# --- commit wakes from a source that says what changed: O(changes) ------------------------


class ChangingDesired(Desired):
    """Desired peers that also say what changed since the last load, as LocalFeed does."""

    def __init__(self, *specs: PeerSpec) -> None:
        super().__init__(*specs)
        self.whole_loads = 0
        self._loaded: dict[bytes, PeerSpec] = {}

    async def __call__(self) -> Sequence[PeerSpec]:
        self.whole_loads += 1
        self._loaded = {s.public_key: s for s in self.specs}
        return self.specs

    async def changes(self) -> DesiredChanges | None:
        now = {s.public_key: s for s in self.specs}
        put = tuple(s for k, s in now.items() if self._loaded.get(k) != s)
        gone = tuple(k for k in self._loaded if k not in now)
        self._loaded = now
        return DesiredChanges(put=put, gone=gone)


@settings(max_examples=80, deadline=None)
@given(
    steps=st.lists(st.lists(spec_strategy, max_size=5), min_size=1, max_size=8),
    refused=st.sets(st.sampled_from(KEYS), max_size=2),
)
async def test_any_sequence_of_told_changes_leaves_what_a_full_pass_would(
    steps: list[list[PeerSpec]], refused: set[bytes],
) -> None:
    backend = CountingBackend()
    backend.reject_keys = refused
    desired = ChangingDesired()
    rec = reconciler(backend, desired, load_changes=desired.changes)
    await rec.reconcile()  # the first pass is full
    with capture_logs():
        for step in steps:
            desired.specs = list({s.public_key: s for s in step}.values())
            await rec.reconcile(full=False)
        assert backend.dumps == 1 and desired.whole_loads == 1, "wakes load only the changes"
        # A full pass now changes nothing: only the refused peers are tried (and refused).
        result = await rec.reconcile()
    wanted = {s.public_key: s for s in desired.specs}
    assert result.applied.empty
    assert set(result.rejected) == refused & wanted.keys()
    dumped = {p.public_key: p for p in (await backend.dump()).peers}
    assert dumped == {k: state(s) for k, s in wanted.items() if k not in refused}


async def test_a_refused_peer_is_tried_again_by_the_next_commit_wake() -> None:
    backend = CountingBackend()
    backend.reject_keys = {K2}
    desired = ChangingDesired(*PEERS)
    rec = reconciler(backend, desired, load_changes=desired.changes)
    with capture_logs():
        assert (await rec.reconcile()).rejected == (K2,)
    backend.reject_keys = set()
    newcomer = PeerSpec(K4, ("10.100.0.9/32",))
    desired.specs.append(newcomer)
    result = await rec.reconcile(full=False)
    assert set(result.applied.adds) == {PEERS[1], newcomer} and not result.rejected
    assert {p.public_key for p in (await backend.dump()).peers} == {K1, K2, K3, K4}
    assert (await rec.reconcile(full=False)).applied.empty


async def test_a_source_that_cannot_tell_gets_a_whole_load() -> None:
    backend = CountingBackend()
    desired = ChangingDesired(*PEERS[:2])

    async def cannot_tell() -> DesiredChanges | None:
        return None

    rec = reconciler(backend, desired, load_changes=cannot_tell)
    await rec.reconcile()
    desired.specs = [PEERS[2]]
    result = await rec.reconcile(full=False)
    assert result.applied == PeerChanges(adds=(PEERS[2],), removals=(K1, K2))
    assert desired.whole_loads == 2 and backend.dumps == 1
