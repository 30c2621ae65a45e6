"""The data plane's only link to the rest of vpngw: desired state in, observations out.

Two implementations: `local.LocalFeed` (the database of this process, `vpngw serve`) and
`gateway.agent.feed.AgentFeed` (the control plane over HTTP, `vpngw agent`). The reconciler
and collector never know which one they were given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from gateway.wireguard.backend import PeerSpec
from gateway.wireguard.collector import CollectorSnapshot
from gateway.wireguard.sessions import SessionEvent

SavedSessions = Mapping[str, Mapping[str, int | str]]


class DesiredStateSource(Protocol):
    async def desired_peers(self) -> Sequence[PeerSpec]:
        """Every peer the interface should carry right now."""
        ...


class ObservationSink(Protocol):
    async def sessions(self, events: Sequence[SessionEvent]) -> None:
        """Session events in the order seen; raising makes the collector retry them."""
        ...

    async def peer_status(self, snapshot: CollectorSnapshot) -> None:
        """The latest per-peer status and the session tracker, after every collector pass."""
        ...

    async def saved_sessions(self) -> SavedSessions:
        """The tracker state last handed to `peer_status` (open sessions survive restarts)."""
        ...
