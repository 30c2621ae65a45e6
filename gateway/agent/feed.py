"""The HTTP feed of `vpngw agent`: desired state as last received (and saved), observations
queued on disk until the control plane acknowledges them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from gateway.agent import protocol
from gateway.agent.protocol import DesiredPeerDoc, StateDoc
from gateway.agent.store import AgentStore
from gateway.dataplane.feed import SavedSessions
from gateway.wireguard.backend import PeerSpec
from gateway.wireguard.collector import CollectorSnapshot, PeerStatus
from gateway.wireguard.keys import from_base64
from gateway.wireguard.sessions import SessionEvent
from provisioning.addresses import host_prefix


class AgentFeed:
    """Both halves of the data plane's feed for one gateway host."""

    def __init__(self, store: AgentStore, *, on_queued: Callable[[], None]) -> None:
        self._store = store
        self._on_queued = on_queued
        self.state: StateDoc | None = None
        self._peers: dict[str, DesiredPeerDoc] = {}
        self._status_sent: dict[bytes, PeerStatus] = {}
        self._status_pending: dict[bytes, PeerStatus] = {}

    @property
    def revision(self) -> int:
        return self.state.revision if self.state is not None else 0

    def apply(self, doc: StateDoc) -> bool:
        """Take a full state or a delta; True when the desired peers changed."""
        before = dict(self._peers)
        if doc.full:
            self._peers = {p.peer_id: p for p in doc.peers}
        else:
            for peer_id in doc.removed:
                self._peers.pop(peer_id, None)
            for p in doc.peers:
                self._peers[p.peer_id] = p
        changed = self._peers != before or self.state is None
        self.state = StateDoc(doc.gateway, doc.revision, True, tuple(self._peers.values()), ())
        return changed

    def document(self) -> dict[str, Any]:
        """The whole desired state as saved on disk (a full state document)."""
        assert self.state is not None
        return protocol.state_to_wire(self.state)

    async def desired_peers(self) -> list[PeerSpec]:
        return [
            PeerSpec(
                public_key=from_base64(p.public_key),
                allowed_ips=tuple(host_prefix(ip) for ip in p.tunnel_ips),
                preshared_key=from_base64(p.preshared_key) if p.preshared_key else None,
            )
            for p in self._peers.values()
        ]

    async def sessions(self, events: Sequence[SessionEvent]) -> None:
        wire = [protocol.event_to_wire(e) for e in events]
        for chunk in protocol.chunks(wire, protocol.MAX_BATCH_EVENTS):
            # On disk before the collector moves on: a crash now loses nothing.
            await asyncio.to_thread(self._store.enqueue, list(chunk))
        self._on_queued()

    async def peer_status(self, snapshot: CollectorSnapshot) -> None:
        for key, status in snapshot.peers.items():
            if self._status_sent.get(key) != status:
                self._status_pending[key] = status
        await asyncio.to_thread(self._store.save_sessions, snapshot.sessions)

    async def saved_sessions(self) -> SavedSessions:
        return await asyncio.to_thread(self._store.load_sessions)

    def take_statuses(self) -> list[PeerStatus]:
        """Statuses changed since the last report (only the latest per peer is kept)."""
        pending, self._status_pending = self._status_pending, {}
        return list(pending.values())

    def sent(self, statuses: Sequence[PeerStatus]) -> None:
        for s in statuses:
            self._status_sent[s.public_key] = s

    def unsent(self, statuses: Sequence[PeerStatus]) -> None:
        for s in statuses:
            self._status_pending.setdefault(s.public_key, s)
