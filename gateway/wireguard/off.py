"""`NullBackend`: keeps the interface configuration in memory and carries no traffic."""

from __future__ import annotations

from gateway.wireguard.backend import (
    InterfaceDump,
    InterfaceSpec,
    PeerChanges,
    PeerSpec,
    PeerState,
)
from gateway.wireguard.keys import public_key_of


class NullBackend:
    """For provisioning-only deployments (`--wireguard off`) and as an honest test double.

    It remembers what it was told, so the reconciler converges and the API shows
    peers, but no handshake ever happens.
    """

    def __init__(self) -> None:
        self._spec: InterfaceSpec | None = None
        self._peers: dict[bytes, PeerSpec] = {}

    async def ensure_interface(self, spec: InterfaceSpec) -> None:
        self._spec = spec

    async def dump(self) -> InterfaceDump:
        spec = self._spec
        return InterfaceDump(
            public_key=None if spec is None else public_key_of(spec.private_key),
            listen_port=None if spec is None else spec.listen_port,
            fwmark=None if spec is None else spec.fwmark,
            peers=tuple(
                PeerState(
                    public_key=peer.public_key,
                    allowed_ips=peer.allowed_ips,
                    preshared_key_digest=peer.preshared_key_digest,
                    persistent_keepalive=peer.persistent_keepalive,
                )
                for peer in self._peers.values()
            ),
        )

    async def apply(self, changes: PeerChanges) -> None:
        for key in changes.removals:
            self._peers.pop(key, None)
        for spec in changes.updates:
            if spec.public_key in self._peers:
                self._peers[spec.public_key] = spec
        for spec in changes.adds:
            self._peers[spec.public_key] = spec

    async def close(self) -> None:
        return None
