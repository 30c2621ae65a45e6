"""Desired peers whose key can never make a tunnel, kept off the interface (and named once).

The API refuses such keys (a Curve25519 point of small order, or the interface's own key),
but peers stored before those checks landed may still hold one. They are not deleted
(ops decide what becomes of a tenant's peer); the data plane leaves them out and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from gateway.wireguard.backend import PeerSpec
from gateway.wireguard.keys import public_key_of, to_base64
from provisioning.keys import SMALL_ORDER_PUBLIC_KEYS

log = structlog.get_logger("vpngw.dataplane")


def unusable_reason(public_key: bytes, own_public_key: bytes) -> str | None:
    """Why a peer with this key could never handshake with the interface, if it could not."""
    if public_key[:31] + bytes([public_key[31] & 0x7F]) in SMALL_ORDER_PUBLIC_KEYS:
        return "a Curve25519 point of small order"
    if public_key == own_public_key:
        return "the interface's own public key"
    return None


class UnusableKeyFilter:
    """Drops the unusable peers from each desired set; warns once per key, at its first pass
    (at start for those stored before the checks)."""

    def __init__(self, interface_private_key: bytes) -> None:
        self._own = public_key_of(interface_private_key)
        self._named: set[bytes] = set()

    def __call__(self, peers: Sequence[PeerSpec]) -> list[PeerSpec]:
        usable = []
        for peer in peers:
            reason = unusable_reason(peer.public_key, self._own)
            if reason is None:
                usable.append(peer)
            elif peer.public_key not in self._named:
                self._named.add(peer.public_key)
                log.warning("stored peer left off the interface: its key can never make a "
                            "tunnel; rotate its key or delete the peer",
                            public_key=to_base64(peer.public_key), reason=reason)
        return usable
