"""The agent's disk queue (bounded, ordered, durable across restarts), its feed's handling
of full states and deltas, and the protocol's round trips and refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.agent import protocol
from gateway.agent.feed import AgentFeed
from gateway.agent.protocol import DesiredPeerDoc, GatewayDoc, StateDoc
from gateway.agent.store import AgentStore
from gateway.wireguard.backend import Endpoint
from gateway.wireguard.collector import PeerStatus
from gateway.wireguard.keys import public_key_of, to_base64
from gateway.wireguard.sessions import SessionEnded, SessionRoamed, SessionStarted
from provisioning.errors import InvalidInput

KEY = public_key_of(bytes([3] * 32))
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
GW = GatewayDoc("gw-a", "fra", "fra.test:51820", ("10.101.0.0/23",), None)


def test_session_events_survive_the_wire_unchanged() -> None:
    events = [
        SessionStarted(KEY, T1, "203.0.113.5:4000", T0),
        SessionRoamed(KEY, T1, "203.0.113.5:4000", "[2001:db8::1]:4001"),
        SessionEnded(KEY, T1, "203.0.113.5:4000", T0, T1, 10, 20),
    ]
    for i, e in enumerate(events):
        assert protocol.event_from_wire(protocol.event_to_wire(e), i) == e
    status = PeerStatus(KEY, Endpoint.parse("203.0.113.5:4000"), T0, 1, 2, True)
    assert protocol.status_from_wire(protocol.status_to_wire(status), 0) == status


def test_bad_events_name_the_field() -> None:
    good = protocol.event_to_wire(SessionStarted(KEY, T1, "203.0.113.5:4000", T0))
    cases = [
        ({**good, "endpoint": "x"}, "events[0].endpoint"),
        ({**good, "public_key": "AAAA"}, "events[0].public_key"),
        ({**good, "at": "yesterday"}, "events[0].at"),
        ({**good, "extra": 1}, "events[0].extra"),
        ({k: v for k, v in good.items() if k != "first_handshake"}, "events[0].first_handshake"),
    ]
    for doc, field in cases:
        with pytest.raises(InvalidInput) as caught:
            protocol.event_from_wire(doc, 0)
        assert caught.value.field == field
    with pytest.raises(protocol.EventNotAllowed):
        protocol.event_from_wire({**good, "type": "tenant.suspended"}, 0)
    with pytest.raises(InvalidInput, match="batch_id"):
        protocol.batch_from_wire({"batch_id": "short", "events": [good]})


def test_queue_keeps_order_and_the_oldest_when_full(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "a", max_queued_events=3)
    first = store.enqueue([{"n": 1}, {"n": 2}])
    second = store.enqueue([{"n": 3}])
    assert first and second and first != second
    assert store.enqueue([{"n": 4}]) is None  # full: the newest is dropped, and counted
    assert store.dropped == 1
    reopened = AgentStore(tmp_path / "a", max_queued_events=3)  # after an agent restart
    batches = reopened.batches()
    assert [b.batch_id for b in batches] == [first, second]
    assert [e["n"] for b in batches for e in b.events] == [1, 2, 3]
    assert all(b.path.stat().st_mode & 0o777 == 0o600 for b in batches)
    reopened.acknowledged(batches[0])
    assert reopened.queued_events == 1
    assert reopened.enqueue([{"n": 5}, {"n": 6}])
    assert reopened.batches()[0].batch_id == second


def test_interface_key_is_generated_once_and_private(tmp_path: Path) -> None:
    store = AgentStore(tmp_path / "a")
    key = store.private_key()
    assert len(key) == 32 and store.private_key() == key
    assert (tmp_path / "a" / "wireguard.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700


def _peer(peer_id: str, n: int) -> DesiredPeerDoc:
    return DesiredPeerDoc(peer_id, to_base64(public_key_of(bytes([n] * 32))), None,
                          (f"10.101.0.{n}",))


async def test_feed_applies_full_states_and_deltas(tmp_path: Path) -> None:
    feed = AgentFeed(AgentStore(tmp_path / "a"), on_queued=lambda: None)
    assert feed.apply(StateDoc(GW, 5, True, (_peer("p1", 2), _peer("p2", 3)), ()))
    assert not feed.apply(StateDoc(GW, 5, False, (), ()))
    assert feed.apply(StateDoc(GW, 7, False, (_peer("p3", 4),), ("p1",)))
    specs = await feed.desired_peers()
    assert sorted(s.allowed_ips[0] for s in specs) == ["10.101.0.3/32", "10.101.0.4/32"]
    saved = protocol.state_from_wire(feed.document())
    assert saved.full and saved.revision == 7 and {p.peer_id for p in saved.peers} == {"p2", "p3"}
    assert feed.apply(StateDoc(GW, 9, True, (_peer("p9", 9),), ()))  # a full state replaces
    assert [s.allowed_ips for s in await feed.desired_peers()] == [("10.101.0.9/32",)]
