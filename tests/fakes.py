"""Hand-written fakes that honour vpngw's protocols (no library is mocked)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway.wireguard.backend import (
    BackendUnavailable,
    Endpoint,
    InterfaceDump,
    InterfaceSpec,
    PeerChanges,
    PeerState,
)
from gateway.wireguard.keys import public_key_of


class MemoryBackend:
    """An interface in memory: what the reconciler applies, the collector reads back."""

    def __init__(self) -> None:
        self.spec: InterfaceSpec | None = None
        self.peers: dict[bytes, PeerState] = {}
        self.broken = False

    async def ensure_interface(self, spec: InterfaceSpec) -> None:
        if self.broken:
            raise BackendUnavailable("socket missing")
        self.spec = spec

    async def dump(self) -> InterfaceDump:
        if self.broken or self.spec is None:
            raise BackendUnavailable("socket missing")
        return InterfaceDump(
            public_key_of(self.spec.private_key), self.spec.listen_port, tuple(self.peers.values())
        )

    async def apply(self, changes: PeerChanges) -> None:
        if self.broken:
            raise BackendUnavailable("daemon gone")
        for key in changes.removals:
            self.peers.pop(key, None)
        for spec in changes.updates + changes.adds:
            old = self.peers.get(spec.public_key, PeerState(spec.public_key))
            self.peers[spec.public_key] = replace(old, allowed_ips=spec.allowed_ips)

    async def close(self) -> None:
        return None

    def handshake(self, key: bytes, *, at: Any, endpoint: str, rx: int, tx: int) -> None:
        self.peers[key] = replace(
            self.peers[key],
            latest_handshake=at,
            endpoint=Endpoint.parse(endpoint),
            rx_bytes=rx,
            tx_bytes=tx,
        )
