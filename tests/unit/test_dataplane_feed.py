"""The data plane runs from any feed: no database, no HTTP app, just the two protocols."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from gateway.dataplane.feed import SavedSessions
from gateway.dataplane.plane import DataPlane
from gateway.wireguard.backend import InterfaceSpec, PeerSpec
from gateway.wireguard.collector import CollectorSnapshot
from gateway.wireguard.keys import public_key_of
from gateway.wireguard.plan import DesiredChanges
from gateway.wireguard.sessions import SessionEvent
from provisioning.keys import SMALL_ORDER_PUBLIC_KEYS
from tests.fakes import MemoryBackend

KEY = bytes(range(32))


class ListFeed:
    """Desired peers from a list; observations kept in lists."""

    def __init__(self, desired: list[PeerSpec], saved: SavedSessions) -> None:
        self.desired = desired
        self.saved = saved
        self.events: list[SessionEvent] = []
        self.snapshots: list[CollectorSnapshot] = []

    async def desired_peers(self) -> Sequence[PeerSpec]:
        return list(self.desired)

    async def sessions(self, events: Sequence[SessionEvent]) -> None:
        self.events.extend(events)

    async def peer_status(self, snapshot: CollectorSnapshot) -> None:
        self.snapshots.append(snapshot)
        self.saved = snapshot.sessions

    async def saved_sessions(self) -> SavedSessions:
        return self.saved


async def until(check: Callable[[], object]) -> None:
    for _ in itertools.count():
        if check():
            return
        await asyncio.sleep(0.01)


async def test_a_plane_follows_its_source_and_reports_to_its_sink() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    client_key = public_key_of(bytes([7] * 32))
    feed = ListFeed([PeerSpec(client_key, ("10.0.0.2/32",))], {})
    backend = MemoryBackend()
    statuses: dict[str, tuple[bool, str]] = {}
    plane = DataPlane(
        backend=backend,
        interface=InterfaceSpec("wgtest0", KEY, 51820, ("10.0.0.1/24",)),
        source=feed,
        sink=feed,
        collect_interval=0.01,
        reconcile_interval=0.01,
        clock=lambda: now,
        on_status=lambda name, ok, detail: statuses.__setitem__(name, (ok, detail)),
    )
    await plane.start()
    try:
        assert set(backend.peers) == {client_key}
        assert statuses["wireguard"][0]
        backend.handshake(client_key, at=now, endpoint="203.0.113.9:5000", rx=10, tx=20)
        await asyncio.wait_for(until(lambda: feed.events), timeout=10)
        assert feed.events[0].type == "session.started"
        feed.desired = []
        plane.wake()
        await asyncio.wait_for(until(lambda: not backend.peers), timeout=10)
    finally:
        await plane.stop()
    assert feed.snapshots and feed.snapshots[-1].peers == {}  # status went to the sink


async def test_a_restarted_plane_resumes_open_sessions_from_the_sink() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    client_key = public_key_of(bytes([9] * 32))
    feed = ListFeed([PeerSpec(client_key, ("10.0.0.3/32",))], {})
    backend = MemoryBackend()

    def plane() -> DataPlane:
        return DataPlane(
            backend=backend,
            interface=InterfaceSpec("wgtest0", KEY, 51820, ("10.0.0.1/24",)),
            source=feed, sink=feed, collect_interval=0.01, clock=lambda: now,
            session_grace=timedelta(seconds=1),
        )

    first = plane()
    await first.start()
    backend.handshake(client_key, at=now, endpoint="203.0.113.9:5000", rx=10, tx=20)
    await asyncio.wait_for(until(lambda: feed.events), timeout=10)
    await first.stop()
    second = plane()
    await second.start()
    now += timedelta(seconds=300)  # the handshake went stale while nobody watched
    await asyncio.wait_for(until(lambda: len(feed.events) == 2), timeout=10)
    await second.stop()
    assert [e.type for e in feed.events] == ["session.started", "session.ended"]


class ChangeFeed(ListFeed):
    """A feed that also says what changed since its last load (as the in-process one does)."""

    def __init__(self, desired: list[PeerSpec]) -> None:
        super().__init__(desired, {})
        self.whole_loads = 0
        self.told: list[DesiredChanges] = []

    async def desired_peers(self) -> Sequence[PeerSpec]:
        self.whole_loads += 1
        return list(self.desired)

    async def desired_changes(self) -> DesiredChanges | None:
        return self.told.pop(0) if self.told else DesiredChanges()


async def test_commit_wakes_take_only_the_changes_and_leave_unusable_keys_off() -> None:
    first, second = (public_key_of(bytes([n] * 32)) for n in (11, 12))
    unusable = sorted(SMALL_ORDER_PUBLIC_KEYS)[0]
    feed = ChangeFeed([PeerSpec(first, ("10.0.0.2/32",))])
    backend = MemoryBackend()
    plane = DataPlane(
        backend=backend, interface=InterfaceSpec("wgtest0", KEY, 51820, ("10.0.0.1/24",)),
        source=feed, sink=feed, collect_interval=3600, reconcile_interval=3600,
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
    )
    await plane.start()
    try:
        assert set(backend.peers) == {first}
        # The loop's own first pass is full too; the wake must come after it.
        await asyncio.wait_for(until(lambda: feed.whole_loads == 2), timeout=10)
        feed.desired = [PeerSpec(second, ("10.0.0.3/32",)), PeerSpec(unusable, ("10.0.0.4/32",))]
        feed.told.append(DesiredChanges(put=tuple(feed.desired), gone=(first,)))
        plane.wake()
        await asyncio.wait_for(until(lambda: set(backend.peers) == {second}), timeout=10)
        assert feed.whole_loads == 2, "a commit wake loads only what changed"
    finally:
        await plane.stop()
