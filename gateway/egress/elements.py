"""The desired map elements kept per peer (pure): a pass rebuilds only the peers that changed.

`desired_elements` over every peer parses each peer's addresses and works out its blocks;
at 10,000 peers that is most of a pass that changed one peer. The cache keeps each peer's
elements beside the addresses they were built from, so a pass costs a comparison per
peer and a rebuild per changed one, and it hands back the element changes of the pass
(what a full rebuild compared with the previous one would give) without diffing the maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.egress.mapping import EgressMap, PortBlock
from gateway.egress.ruleset import DesiredElements, ElementChanges, desired_elements
from gateway.wireguard.backend import PeerSpec


def tunnel_addresses(spec: PeerSpec) -> tuple[str, ...]:
    return tuple(prefix.split("/", 1)[0] for prefix in spec.allowed_ips)


@dataclass(frozen=True)
class _PeerElements:
    allowed_ips: tuple[str, ...]
    ipv4: dict[str, PortBlock]
    ipv6: dict[str, PortBlock]


@dataclass
class ElementCache:
    """`desired_elements(egress, peers)`, kept up to date peer by peer.

    Tunnel addresses are unique among the desired peers (the pools hand each out once),
    so the elements of the peers never overlap and each can be dropped on its own.
    """

    egress: EgressMap
    _peers: dict[bytes, _PeerElements] = field(default_factory=dict)
    _ipv4: dict[str, PortBlock] = field(default_factory=dict)
    _ipv6: dict[str, PortBlock] = field(default_factory=dict)
    rebuilt: int = 0  # peers whose elements the last update built (the rest were reused)

    @property
    def count(self) -> int:
        return len(self._ipv4)

    def elements(self) -> DesiredElements:
        """A copy of every element (for a full check: as costly as the rebuild it replaces
        only where the kernel is read back anyway)."""
        return DesiredElements(dict(self._ipv4), dict(self._ipv6))

    def update(self, peers: Sequence[PeerSpec]) -> ElementChanges:
        """Follow `peers` (the whole desired set); the element changes it brought."""
        wanted = {p.public_key: p for p in peers}
        gone = [key for key in self._peers if key not in wanted]
        changed = [
            p for key, p in wanted.items()
            if (cached := self._peers.get(key)) is None or cached.allowed_ips != p.allowed_ips
        ]
        before4: dict[str, PortBlock | None] = {}
        before6: dict[str, PortBlock | None] = {}
        # Every old element goes before any new one is added: an address can pass from one
        # peer to another within a pass.
        for key in gone + [p.public_key for p in changed if p.public_key in self._peers]:
            old = self._peers.pop(key)
            _remove(self._ipv4, old.ipv4, before4)
            _remove(self._ipv6, old.ipv6, before6)
        for p in changed:
            built = desired_elements(self.egress, [tunnel_addresses(p)])
            self._peers[p.public_key] = _PeerElements(p.allowed_ips, built.ipv4, built.ipv6)
            _add(self._ipv4, built.ipv4, before4)
            _add(self._ipv6, built.ipv6, before6)
        self.rebuilt = len(changed)
        add4, delete4 = _changes(self._ipv4, before4)
        add6, delete6 = _changes(self._ipv6, before6)
        return ElementChanges(add4, delete4, add6, delete6)


def _remove(
    current: dict[str, PortBlock], old: dict[str, PortBlock], before: dict[str, PortBlock | None]
) -> None:
    for key in old:
        before.setdefault(key, current.get(key))
        current.pop(key, None)


def _add(
    current: dict[str, PortBlock], new: dict[str, PortBlock], before: dict[str, PortBlock | None]
) -> None:
    for key, block in new.items():
        before.setdefault(key, current.get(key))
        current[key] = block


def _changes(
    current: dict[str, PortBlock], before: dict[str, PortBlock | None]
) -> tuple[dict[str, PortBlock], tuple[str, ...]]:
    # As ruleset._diff: a changed block is a delete and an add (nft cannot update in place).
    touched: Iterable[str] = before
    delete = tuple(sorted(k for k in touched if before[k] is not None
                          and current.get(k) != before[k]))
    add = {k: current[k] for k in sorted(touched) if k in current and current[k] != before[k]}
    return add, delete
