"""Pure diff of desired against actual peers into the smallest set of `PeerChanges`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.wireguard.backend import PeerChanges, PeerSpec, PeerState


def _in_sync(desired: PeerSpec, actual: PeerState) -> bool:
    return (
        set(desired.allowed_ips) == set(actual.allowed_ips)
        and desired.preshared_key_digest == actual.preshared_key_digest
        and (desired.persistent_keepalive or None) == actual.persistent_keepalive
    )


def plan_changes(desired: Mapping[bytes, PeerSpec], actual: Sequence[PeerState]) -> PeerChanges:
    """Adds for missing peers, updates for drifted ones, removals for unknown ones."""
    present = {state.public_key: state for state in actual}
    adds = tuple(spec for key, spec in desired.items() if key not in present)
    updates = tuple(
        spec for key, spec in desired.items() if key in present and not _in_sync(spec, present[key])
    )
    removals = tuple(key for key in present if key not in desired)
    return PeerChanges(adds=adds, updates=updates, removals=removals)
