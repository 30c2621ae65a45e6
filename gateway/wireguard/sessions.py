"""Pure session state machine: successive peer observations in, session events out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import ClassVar

from gateway.wireguard.backend import PeerState
from gateway.wireguard.keys import from_base64, to_base64

# WireGuard's REJECT_AFTER_TIME: past it no data can flow without a new handshake.
REJECT_AFTER_TIME = timedelta(seconds=180)
DEFAULT_GRACE = timedelta(seconds=30)


@dataclass(frozen=True)
class SessionStarted:
    type: ClassVar[str] = "session.started"
    public_key: bytes
    at: datetime
    endpoint: str
    first_handshake: datetime


@dataclass(frozen=True)
class SessionRoamed:
    type: ClassVar[str] = "session.roamed"
    public_key: bytes
    at: datetime
    old_endpoint: str
    new_endpoint: str


@dataclass(frozen=True)
class SessionEnded:
    type: ClassVar[str] = "session.ended"
    public_key: bytes
    at: datetime
    endpoint: str
    first_handshake: datetime
    last_handshake: datetime
    rx_bytes: int
    tx_bytes: int


SessionEvent = SessionStarted | SessionRoamed | SessionEnded


@dataclass(frozen=True)
class Session:
    endpoint: str
    first_handshake: datetime
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass(frozen=True)
class PeerTrack:
    """What is remembered about one peer between observations."""

    # Interface counters at the previous observation; None before the first one.
    rx_seen: int | None = None
    tx_seen: int | None = None
    # Newest handshake ever seen, kept after a session ends so it cannot start twice.
    last_handshake: datetime | None = None
    session: Session | None = None

    def to_dict(self) -> dict[str, int | str]:
        # A copy: callers own what they are given.
        return dict(self._data)

    @cached_property
    def _data(self) -> dict[str, int | str]:
        # Tracks are immutable and idle ones carry over unchanged from pass to pass.
        data: dict[str, int | str] = {}
        if self.rx_seen is not None and self.tx_seen is not None:
            data |= {"rx_seen": self.rx_seen, "tx_seen": self.tx_seen}
        if self.last_handshake is not None:
            data["last_handshake"] = _time_text(self.last_handshake)
        if self.session is not None:
            data |= {
                "endpoint": self.session.endpoint,
                "first_handshake": _time_text(self.session.first_handshake),
                "rx_bytes": self.session.rx_bytes,
                "tx_bytes": self.session.tx_bytes,
            }
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, int | str]) -> PeerTrack:
        session = None
        if "endpoint" in data:
            session = Session(
                endpoint=_text(data, "endpoint"),
                first_handshake=_time(data, "first_handshake"),
                rx_bytes=_count(data, "rx_bytes"),
                tx_bytes=_count(data, "tx_bytes"),
            )
        track = cls(
            rx_seen=_count(data, "rx_seen") if "rx_seen" in data else None,
            tx_seen=_count(data, "tx_seen") if "tx_seen" in data else None,
            last_handshake=_time(data, "last_handshake") if "last_handshake" in data else None,
            session=session,
        )
        if session is not None and track.last_handshake is None:
            raise ValueError("a session needs last_handshake")
        return track


_UNSEEN = PeerTrack()


def _time_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text(data: Mapping[str, int | str], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    return value


def _count(data: Mapping[str, int | str], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be a non-negative integer")
    return value


def _time(data: Mapping[str, int | str], key: str) -> datetime:
    moment = datetime.fromisoformat(_text(data, key))
    if moment.tzinfo is None:
        raise ValueError(f"{key} must carry a UTC offset")
    return moment.astimezone(UTC)


def _deltas(track: PeerTrack, state: PeerState) -> tuple[int, int]:
    if track.rx_seen is None or track.tx_seen is None:
        return state.rx_bytes, state.tx_bytes
    if state.rx_bytes < track.rx_seen or state.tx_bytes < track.tx_seen:
        # Counters went down: the peer was re-added and counts from zero again.
        return state.rx_bytes, state.tx_bytes
    return state.rx_bytes - track.rx_seen, state.tx_bytes - track.tx_seen


def _newest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a or b
    return max(a, b)


@dataclass(frozen=True)
class SessionTracker:
    """Immutable per-peer tracks; `observe` returns the next tracker and the events."""

    peers: Mapping[bytes, PeerTrack] = field(default_factory=dict)
    grace: timedelta = DEFAULT_GRACE
    # Handshake age past which a session counts as ended (before the grace). WireGuard's
    # own REJECT_AFTER_TIME by default: a shorter one ends sessions that are still live.
    silence: timedelta = REJECT_AFTER_TIME
    # Base64 of the keys `to_dict` has seen, shared with the trackers `observe` derives.
    _names: dict[bytes, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def connected(self, public_key: bytes) -> bool:
        track = self.peers.get(public_key)
        return track is not None and track.session is not None

    def observe(
        self, states: Sequence[PeerState], at: datetime
    ) -> tuple[SessionTracker, list[SessionEvent]]:
        """Feed one complete dump taken at `at` (timezone-aware)."""
        if at.tzinfo is None:
            raise ValueError("observation time must be timezone-aware")
        events: list[SessionEvent] = []
        peers: dict[bytes, PeerTrack] = {}
        before = self.peers
        for state in states:
            key = state.public_key
            track = before.get(key, _UNSEEN)
            handshake = state.latest_handshake
            if track.session is None and (
                handshake is None
                or (track.last_handshake is not None and handshake <= track.last_handshake)
            ):
                # Idle, no newer handshake: no session can start or end, only the
                # counters move (what _step would conclude, at a fraction of the cost).
                if track.rx_seen != state.rx_bytes or track.tx_seen != state.tx_bytes:
                    track = PeerTrack(state.rx_bytes, state.tx_bytes, track.last_handshake)
                peers[key] = track
                continue
            track, new = self._step(track, state, at)
            peers[key] = track
            events += new
        for key, track in before.items():
            # An idle peer gone from the interface is simply forgotten. One gone
            # mid-session (removed, or its daemon restarted) may come back with fresh
            # counters, so its session ends only once its handshake is stale.
            if key in peers or track.session is None:
                continue
            if self._stale(track.last_handshake, at):
                events.append(_ended(key, track, track.session, at))
            else:
                peers[key] = track
        after = replace(self, peers=peers)
        object.__setattr__(after, "_names", self._names)
        return after, events

    def _stale(self, handshake: datetime | None, at: datetime) -> bool:
        return handshake is None or at - handshake > self.silence + self.grace

    def _step(
        self, track: PeerTrack, state: PeerState, at: datetime
    ) -> tuple[PeerTrack, list[SessionEvent]]:
        key = state.public_key
        rx, tx = _deltas(track, state)
        handshake = state.latest_handshake
        newest = _newest(track.last_handshake, handshake)
        endpoint = None if state.endpoint is None else str(state.endpoint)
        events: list[SessionEvent] = []
        session = track.session
        if session is not None:
            session = replace(
                session, rx_bytes=session.rx_bytes + rx, tx_bytes=session.tx_bytes + tx
            )
            if endpoint is not None and endpoint != session.endpoint:
                events.append(SessionRoamed(key, at, session.endpoint, endpoint))
                session = replace(session, endpoint=endpoint)
        elif (
            handshake is not None
            and (track.last_handshake is None or handshake > track.last_handshake)
            and endpoint is not None
            and not self._stale(handshake, at)
        ):
            session = Session(endpoint, handshake, rx, tx)
            events.append(SessionStarted(key, at, endpoint, handshake))
        if session is not None and self._stale(newest, at):
            events.append(_ended(key, replace(track, last_handshake=newest), session, at))
            session = None
        return PeerTrack(state.rx_bytes, state.tx_bytes, newest, session), events

    def to_dict(self) -> dict[str, dict[str, int | str]]:
        """Plain data (base64 key → ints and strings) to persist across restarts."""
        names = self._names
        out: dict[str, dict[str, int | str]] = {}
        for key, track in self.peers.items():
            name = names.get(key)
            if name is None:
                name = names[key] = to_base64(key)
            out[name] = track.to_dict()
        if len(names) > 2 * len(out) + 1024:  # forget keys long gone from the interface
            current = {key: names[key] for key in self.peers}
            names.clear()
            names.update(current)
        return out

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Mapping[str, int | str]], *, grace: timedelta = DEFAULT_GRACE,
        silence: timedelta = REJECT_AFTER_TIME,
    ) -> SessionTracker:
        return cls(
            peers={from_base64(key): PeerTrack.from_dict(track) for key, track in data.items()},
            grace=grace,
            silence=silence,
        )


def _ended(key: bytes, track: PeerTrack, session: Session, at: datetime) -> SessionEnded:
    assert track.last_handshake is not None
    return SessionEnded(
        public_key=key,
        at=at,
        endpoint=session.endpoint,
        first_handshake=session.first_handshake,
        last_handshake=track.last_handshake,
        rx_bytes=session.rx_bytes,
        tx_bytes=session.tx_bytes,
    )
