"""The data plane's only link to the rest of vpngw: desired state in, observations out.

Two implementations: `local.LocalFeed` (the database of this process, `vpngw serve`) and
`gateway.agent.feed.AgentFeed` (the control plane over HTTP, `vpngw agent`). The reconciler
and collector never know which one they were given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from gateway.wireguard.backend import PeerSpec
from gateway.wireguard.collector import CollectorSnapshot
from gateway.wireguard.plan import DesiredChanges
from gateway.wireguard.sessions import SessionEvent

SavedSessions = Mapping[str, Mapping[str, int | str]]


class DesiredStateSource(Protocol):
    async def desired_peers(self) -> Sequence[PeerSpec]:
        """Every peer the interface should carry right now."""
        ...


@runtime_checkable
class DesiredChangeSource(DesiredStateSource, Protocol):
    """A source that can also say what changed, so a commit wake costs O(changes)."""

    async def desired_changes(self) -> DesiredChanges | None:
        """The peers changed since the previous call of either method, or None when the
        source cannot tell: the caller then loads them whole with `desired_peers`."""
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
