"""Session state machine and collector, driven by synthetic observations and a fake clock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from gateway.wireguard.backend import BackendError, Endpoint, InterfaceDump, PeerState
from gateway.wireguard.collector import Collector, CollectorSnapshot
from gateway.wireguard.sessions import (
    SessionEnded,
    SessionEvent,
    SessionRoamed,
    SessionStarted,
    SessionTracker,
)

K1, K2 = bytes([0xA1]) * 32, bytes([0xB2]) * 32
T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
EP = Endpoint("198.51.100.7", 40001)


def s(sec: float) -> datetime:
    return T0 + timedelta(seconds=sec)


def obs(
    handshake: float | None,
    rx: int = 0,
    tx: int = 0,
    endpoint: Endpoint | None = EP,
    key: bytes = K1,
) -> PeerState:
    return PeerState(
        public_key=key,
        allowed_ips=("10.100.0.2/32",),
        endpoint=endpoint,
        latest_handshake=None if handshake is None else s(handshake),
        rx_bytes=rx,
        tx_bytes=tx,
    )


class Feed:
    """Steps a tracker through (time, states) pairs and keeps every event."""

    def __init__(self, tracker: SessionTracker | None = None) -> None:
        self.tracker = tracker or SessionTracker()
        self.events: list[SessionEvent] = []

    def at(self, sec: float, *states: PeerState) -> list[SessionEvent]:
        self.tracker, events = self.tracker.observe(states, s(sec))
        self.events += events
        return events


def test_no_handshake_no_session() -> None:
    feed = Feed()
    assert feed.at(0, obs(None, endpoint=None)) == []
    assert not feed.tracker.connected(K1)


def test_session_starts_at_first_handshake() -> None:
    feed = Feed()
    (event,) = feed.at(10, obs(3, rx=148, tx=92))
    assert event == SessionStarted(K1, s(10), "198.51.100.7:40001", s(3))
    assert event.type == "session.started"
    assert feed.tracker.connected(K1)
    assert feed.at(20, obs(3, rx=500, tx=400)) == []


def test_ipv6_endpoint_is_bracketed() -> None:
    (event,) = Feed().at(1, obs(0, endpoint=Endpoint("2001:db8::7", 51820)))
    assert isinstance(event, SessionStarted)
    assert event.endpoint == "[2001:db8::7]:51820"


def test_stale_handshake_seen_first_is_not_a_session() -> None:
    assert Feed().at(1000, obs(0)) == []


def test_roam_reports_old_and_new_endpoint() -> None:
    feed = Feed()
    feed.at(1, obs(0))
    (event,) = feed.at(11, obs(0, endpoint=Endpoint("203.0.113.9", 5000)))
    assert event == SessionRoamed(K1, s(11), "198.51.100.7:40001", "203.0.113.9:5000")
    assert event.type == "session.roamed"


def test_session_ends_after_reject_time_plus_grace_with_totals() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=100, tx=50))
    feed.at(120, obs(120, rx=1100, tx=550))  # rekey: same session
    assert feed.at(330, obs(120, rx=1200, tx=600)) == [], "180 + 30 s is not yet stale"
    (event,) = feed.at(331, obs(120, rx=1200, tx=600))
    assert event == SessionEnded(
        public_key=K1,
        at=s(331),
        endpoint="198.51.100.7:40001",
        first_handshake=s(0),
        last_handshake=s(120),
        rx_bytes=1200,
        tx_bytes=600,
    )
    assert event.type == "session.ended"
    assert not feed.tracker.connected(K1)


def test_grace_is_configurable() -> None:
    feed = Feed(SessionTracker(grace=timedelta(0)))
    feed.at(0, obs(0))
    assert feed.at(180, obs(0)) == []
    assert isinstance(feed.at(181, obs(0))[0], SessionEnded)


def test_silence_is_configurable_and_survives_a_restart() -> None:
    feed = Feed(SessionTracker(grace=timedelta(seconds=1), silence=timedelta(seconds=2)))
    feed.at(0, obs(0))
    assert feed.at(3, obs(0)) == [], "2 + 1 s is not yet stale"
    restored = SessionTracker.from_dict(feed.tracker.to_dict(), grace=timedelta(seconds=1),
                                        silence=timedelta(seconds=2))
    assert restored.silence == timedelta(seconds=2)
    feed = Feed(restored)
    (ended,) = feed.at(3.5, obs(0))
    assert isinstance(ended, SessionEnded) and ended.last_handshake == s(0)
    assert feed.at(4, obs(0)) == [], "ended once; the same handshake starts nothing"


def test_the_same_handshake_never_starts_a_second_session() -> None:
    feed = Feed(SessionTracker(grace=timedelta(0)))
    feed.at(0, obs(0))
    feed.at(200, obs(0))
    assert feed.at(210, obs(0)) == []


def test_next_session_counts_only_its_own_bytes() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=1000, tx=1000))
    feed.at(300, obs(0, rx=1000, tx=1000))  # ended
    (started,) = feed.at(400, obs(395, rx=1300, tx=1100))
    assert isinstance(started, SessionStarted) and started.first_handshake == s(395)
    (ended,) = feed.at(700, obs(395, rx=1300, tx=1100))
    assert isinstance(ended, SessionEnded)
    assert (ended.rx_bytes, ended.tx_bytes) == (300, 100)


def test_counters_going_down_mean_re_added_and_totals_keep_growing() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=1000, tx=500))
    feed.at(10, obs(0, rx=1500, tx=700))
    feed.at(20, obs(15, rx=200, tx=100))  # re-added: counters restart from zero
    feed.at(30, obs(15, rx=300, tx=150))
    (ended,) = feed.at(300, obs(15, rx=300, tx=150))
    assert isinstance(ended, SessionEnded)
    assert (ended.rx_bytes, ended.tx_bytes) == (1500 + 300, 700 + 150)


def test_peer_briefly_gone_keeps_its_session() -> None:
    # wireguard-go restarted: the peer vanishes, comes back re-added without a handshake,
    # then handshakes again — still one session.
    feed = Feed()
    feed.at(0, obs(0, rx=1000, tx=1000))
    assert feed.at(10) == []
    assert feed.at(20, obs(None, endpoint=None)) == []
    assert feed.at(30, obs(25, rx=40, tx=60)) == []
    (ended,) = feed.at(300, obs(25, rx=40, tx=60))
    assert isinstance(ended, SessionEnded)
    assert (ended.rx_bytes, ended.tx_bytes) == (1040, 1060)
    assert [e.type for e in feed.events] == ["session.started", "session.ended"]


def test_peer_gone_for_good_ends_when_stale() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=10, tx=20))
    assert feed.at(100) == []
    (ended,) = feed.at(211)
    assert isinstance(ended, SessionEnded) and (ended.rx_bytes, ended.tx_bytes) == (10, 20)
    assert feed.tracker.peers == {}


def test_idle_peer_gone_is_forgotten() -> None:
    feed = Feed()
    feed.at(0, obs(None, endpoint=None))
    feed.at(10)
    assert feed.tracker.peers == {}


def test_peers_are_independent() -> None:
    feed = Feed()
    events = feed.at(5, obs(1, key=K1), obs(None, key=K2, endpoint=None))
    assert [e.public_key for e in events] == [K1]
    events = feed.at(15, obs(1, key=K1), obs(12, key=K2, endpoint=Endpoint("10.9.9.9", 9)))
    assert [(e.type, e.public_key) for e in events] == [("session.started", K2)]


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SessionTracker().observe([], datetime(2026, 1, 1))


# --- persistence across a service restart ----------------------------------------------


def restored(feed: Feed) -> Feed:
    data = json.loads(json.dumps(feed.tracker.to_dict()))
    for track in data.values():
        assert all(isinstance(v, int | str) for v in track.values())
    return Feed(SessionTracker.from_dict(data, grace=feed.tracker.grace))


def test_state_round_trips_through_plain_data() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=10, tx=20), obs(None, key=K2, endpoint=None, rx=1, tx=2))
    assert restored(feed).tracker == feed.tracker


def test_fresh_session_continues_after_restart() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=100, tx=100))
    feed.at(10, obs(0, rx=200, tx=150))
    after = restored(feed)  # shutdown ends nothing; the service comes back 60 s later
    assert after.at(70, obs(60, rx=900, tx=400)) == []
    assert after.tracker.connected(K1)
    (ended,) = after.at(400, obs(60, rx=900, tx=400))
    assert isinstance(ended, SessionEnded)
    assert (ended.first_handshake, ended.rx_bytes, ended.tx_bytes) == (s(0), 900, 400)


def test_session_that_went_stale_while_down_ends_with_last_known_totals() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=100, tx=100))
    feed.at(10, obs(0, rx=200, tx=150))
    after = restored(feed)
    (ended,) = after.at(3600, obs(0, rx=200, tx=150))
    assert isinstance(ended, SessionEnded)
    assert (ended.last_handshake, ended.rx_bytes, ended.tx_bytes) == (s(0), 200, 150)


def test_stale_session_whose_peer_vanished_while_down_still_ends() -> None:
    feed = Feed()
    feed.at(0, obs(0, rx=100, tx=100))
    (ended,) = restored(feed).at(3600)
    assert isinstance(ended, SessionEnded) and ended.rx_bytes == 100


@pytest.mark.parametrize(
    "bad",
    [
        {"rx_seen": -1, "tx_seen": 0},
        {"rx_seen": "1", "tx_seen": 0},
        {"endpoint": "1.2.3.4:5", "first_handshake": "2026-11-30T03:00:00Z"},
        {"last_handshake": "2026-11-30T03:00:00"},
        {"last_handshake": "yesterday"},
    ],
)
def test_corrupt_state_is_refused(bad: dict[str, int | str]) -> None:
    with pytest.raises(ValueError):
        SessionTracker.from_dict({"oaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaGhoaE=": bad})


@given(st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), min_size=1, max_size=30))
def test_totals_equal_the_bytes_that_flowed(steps: list[tuple[int, bool]]) -> None:
    # Each step: some bytes flow; sometimes the peer was re-added first, which shows as
    # the counter going down (a re-add that ends above the old value cannot be seen).
    tracker, _ = SessionTracker().observe([obs(0)], s(1))
    counter = flowed = 0
    for i, (amount, readded) in enumerate(steps, start=2):
        counter = amount if readded and amount < counter else counter + amount
        flowed += amount
        tracker, _ = tracker.observe([obs(0, rx=counter, tx=counter)], s(i))
    tracker, events = tracker.observe([obs(0, rx=counter, tx=counter)], s(10_000))
    (ended,) = events
    assert isinstance(ended, SessionEnded)
    assert ended.rx_bytes == ended.tx_bytes == flowed


# --- collector --------------------------------------------------------------------------


class ScriptedBackend:
    """Hands out prepared dumps, or raises prepared errors, one per call."""

    def __init__(self, *dumps: InterfaceDump | Exception) -> None:
        self.dumps = list(dumps)

    async def dump(self) -> InterfaceDump:
        item = self.dumps.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def ensure_interface(self, spec: object) -> None:
        raise AssertionError("the collector never configures")

    async def apply(self, changes: object) -> None:
        raise AssertionError("the collector never configures")

    async def close(self) -> None:
        return None


def dump(*peers: PeerState) -> InterfaceDump:
    return InterfaceDump(public_key=bytes(32), listen_port=51820, peers=peers)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_collector_emits_events_and_exposes_state() -> None:
    backend = ScriptedBackend(dump(obs(0, rx=5, tx=6)), dump(obs(0, rx=9, tx=9)))
    clock = Clock()
    emitted: list[Sequence[SessionEvent]] = []
    snapshots: list[CollectorSnapshot] = []

    async def on_events(events: Sequence[SessionEvent]) -> None:
        emitted.append(events)

    async def on_state(snapshot: CollectorSnapshot) -> None:
        snapshots.append(snapshot)

    collector = Collector(
        backend=backend,
        tracker=SessionTracker(),
        clock=clock,
        on_events=on_events,
        on_state=on_state,
    )
    assert collector.peers == {}
    events = await collector.collect()
    assert [e.type for e in events] == ["session.started"]
    status = collector.peers[K1]
    assert status.connected and status.endpoint == EP and status.rx_bytes == 5
    assert snapshots[-1].sessions == collector.tracker.to_dict()
    clock.now = s(400)
    assert [e.type for e in await collector.collect()] == ["session.ended"]
    assert not collector.peers[K1].connected
    assert len(emitted) == 2 and len(snapshots) == 2


async def test_collector_retries_events_the_sink_refused() -> None:
    backend = ScriptedBackend(dump(obs(0)), dump(obs(0)))
    clock = Clock()
    delivered: list[SessionEvent] = []
    fail = True

    async def on_events(events: Sequence[SessionEvent]) -> None:
        if fail:
            raise RuntimeError("outbox unavailable")
        delivered.extend(events)

    collector = Collector(
        backend=backend,
        tracker=SessionTracker(),
        clock=clock,
        on_events=on_events,
    )
    with pytest.raises(RuntimeError):
        await collector.collect()
    assert not collector.tracker.connected(K1)
    fail = False
    clock.now = s(10)
    await collector.collect()
    assert [e.type for e in delivered] == ["session.started"]


async def test_collector_run_survives_backend_errors() -> None:
    backend = ScriptedBackend(BackendError("socket gone"), dump(obs(0)))
    sleeps = 0
    started: list[SessionEvent] = []

    async def on_events(events: Sequence[SessionEvent]) -> None:
        started.extend(events)

    async def sleep(seconds: float) -> None:
        nonlocal sleeps
        sleeps += 1
        if sleeps == 2:
            raise _Stop

    collector = Collector(
        backend=backend,
        tracker=SessionTracker(),
        clock=Clock(),
        on_events=on_events,
        sleep=sleep,
    )
    with capture_logs() as logs, pytest.raises(_Stop):
        await collector.run()
    assert logs[0]["event"] == "wireguard.collect.failed"
    assert [e.type for e in started] == ["session.started"]


class _Stop(Exception):
    pass
