"""Polls the interface, turns dumps into session events and keeps per-peer status for the API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from gateway.wireguard.backend import BackendError, Endpoint, PeerState, WireGuardBackend
from gateway.wireguard.reconciler import Clock, Sleep, utc_now
from gateway.wireguard.sessions import SessionEvent, SessionTracker

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PeerStatus:
    """What the tenant API shows about a peer right now."""

    public_key: bytes
    endpoint: Endpoint | None
    latest_handshake: datetime | None
    rx_bytes: int
    tx_bytes: int
    connected: bool


@dataclass(frozen=True)
class CollectorSnapshot:
    """Handed to `on_state` after every successful pass."""

    at: datetime
    peers: Mapping[bytes, PeerStatus]
    # SessionTracker.to_dict(): persist it and restore with SessionTracker.from_dict.
    sessions: dict[str, dict[str, int | str]]


OnEvents = Callable[[Sequence[SessionEvent]], Awaitable[None]]
OnState = Callable[[CollectorSnapshot], Awaitable[None]]


class Collector:
    """One dump per `interval`; events go to `on_events` before the tracker moves on."""

    def __init__(
        self,
        *,
        backend: WireGuardBackend,
        tracker: SessionTracker,
        on_events: OnEvents,
        on_state: OnState | None = None,
        interval: float = 10.0,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._backend = backend
        self._tracker = tracker
        self._on_events = on_events
        self._on_state = on_state
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._peers: Mapping[bytes, PeerStatus] = {}
        self._sources: dict[bytes, tuple[PeerState, PeerStatus]] = {}

    @property
    def tracker(self) -> SessionTracker:
        return self._tracker

    @property
    def peers(self) -> Mapping[bytes, PeerStatus]:
        """Latest status per peer public key (empty until the first pass)."""
        return self._peers

    async def collect(self) -> list[SessionEvent]:
        """One pass. If `on_events` raises, the tracker stays put and the next pass retries."""
        dump = await self._backend.dump()
        at = self._clock()
        tracker, events = self._tracker.observe(dump.peers, at)
        if events:
            await self._on_events(events)
        self._tracker = tracker
        self._peers = self._statuses(dump.peers, tracker)
        if self._on_state is not None:
            await self._on_state(CollectorSnapshot(at, self._peers, tracker.to_dict()))
        return events

    def _statuses(
        self, states: Sequence[PeerState], tracker: SessionTracker
    ) -> dict[bytes, PeerStatus]:
        # A backend hands back the very same (immutable) PeerState for a peer whose
        # dump lines did not change; its status then only changes with `connected`.
        before = self._sources
        tracks = tracker.peers
        sources: dict[bytes, tuple[PeerState, PeerStatus]] = {}
        peers: dict[bytes, PeerStatus] = {}
        for state in states:
            key = state.public_key
            track = tracks.get(key)  # tracker.connected(key), inlined
            connected = track is not None and track.session is not None
            known = before.get(key)
            if known is not None and known[0] is state and known[1].connected is connected:
                status = known[1]
            else:
                status = PeerStatus(
                    public_key=key,
                    endpoint=state.endpoint,
                    latest_handshake=state.latest_handshake,
                    rx_bytes=state.rx_bytes,
                    tx_bytes=state.tx_bytes,
                    connected=connected,
                )
            sources[key] = (state, status)
            peers[key] = status
        self._sources = sources
        return peers

    async def run(self) -> None:
        while True:
            try:
                await self.collect()
            except BackendError as exc:
                log.warning("wireguard.collect.failed", error=type(exc).__name__, reason=str(exc))
            except Exception:
                # Keep observing even if the audit sink hiccups; the next pass retries.
                log.exception("wireguard.collect.crashed")
            await self._sleep(self._interval)
