"""Pure diff of desired against actual peers into the smallest set of `PeerChanges`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.wireguard.backend import PeerChanges, PeerSpec, PeerState


@dataclass(frozen=True)
class DesiredChanges:
    """How the desired peers changed since they were last loaded: peers new or changed
    (`put`) and keys no longer wanted (`gone`). A key in both is wanted, as `put` says."""

    put: tuple[PeerSpec, ...] = ()
    gone: tuple[bytes, ...] = ()


def _in_sync(desired: PeerSpec, actual: PeerState) -> bool:
    if (desired.persistent_keepalive or None) != actual.persistent_keepalive:
        return False
    # Same order is the common case and needs no sets.
    if desired.allowed_ips != actual.allowed_ips and set(desired.allowed_ips) != set(
        actual.allowed_ips
    ):
        return False
    # Cheap before costly: without a PSK on either side there is nothing to hash.
    if desired.preshared_key is None:
        return actual.preshared_key_digest is None
    return desired.preshared_key_digest == actual.preshared_key_digest


def plan_changes(desired: Mapping[bytes, PeerSpec], actual: Sequence[PeerState]) -> PeerChanges:
    """Adds for missing peers, updates for drifted ones, removals for unknown ones."""
    present = {state.public_key: state for state in actual}
    adds: list[PeerSpec] = []
    updates: list[PeerSpec] = []
    for key, spec in desired.items():
        state = present.get(key)
        if state is None:
            adds.append(spec)
        elif not _in_sync(spec, state):
            updates.append(spec)
    removals = tuple(key for key in present if key not in desired)
    return PeerChanges(adds=tuple(adds), updates=tuple(updates), removals=removals)


def plan_delta(applied: Mapping[bytes, PeerSpec], desired: Mapping[bytes, PeerSpec]) -> PeerChanges:
    """The changes from a desired set known to be on the interface to a new one, no dump."""
    adds = tuple(spec for key, spec in desired.items() if key not in applied)
    updates = tuple(
        spec for key, spec in desired.items() if key in applied and applied[key] != spec
    )
    removals = tuple(key for key in applied if key not in desired)
    return PeerChanges(adds=adds, updates=updates, removals=removals)


def plan_changed(
    applied: Mapping[bytes, PeerSpec], put: Iterable[PeerSpec], gone: Iterable[bytes]
) -> PeerChanges:
    """`plan_delta` for the changed peers only: costs O(changes), whatever is applied.

    `gone` must hold no key of `put`.
    """
    adds: list[PeerSpec] = []
    updates: list[PeerSpec] = []
    for spec in put:
        before = applied.get(spec.public_key)
        if before is None:
            adds.append(spec)
        elif before != spec:
            updates.append(spec)
    removals = tuple(key for key in gone if key in applied)
    return PeerChanges(adds=tuple(adds), updates=tuple(updates), removals=removals)
