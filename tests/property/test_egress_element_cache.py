"""The per-peer element cache equals a full rebuild after any sequence of peer changes, and
its reported changes are what a full diff would apply."""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.egress.elements import ElementCache, tunnel_addresses
from gateway.egress.mapping import resolve
from gateway.egress.ruleset import desired_elements, plan_elements
from gateway.wireguard.backend import PeerSpec

EGRESS = resolve(
    gateway_id="gw1",
    pools=[ipaddress.ip_network("10.100.0.0/26"), ipaddress.ip_network("fd00:100::/64")],
    addresses=("198.51.100.1",),
    ports="1024-65535",
    block_size="auto",
    ipv6="nat66",
    addresses6=("2001:db8::1",),
    blocked=("10.0.0.0/8",),
)
KEYS = 12
# Offsets past the /26 give no element (outside the pool); "v4"/"v6" drop one family.
OFFSETS = st.integers(min_value=2, max_value=70)
FAMILIES = st.sampled_from(["both", "v4", "v6"])


def spec(key: int, offset: int, family: str) -> PeerSpec:
    v4, v6 = f"10.100.{offset // 256}.{offset % 256}/32", f"fd00:100::{offset:x}/128"
    ips = {"both": (v4, v6), "v4": (v4,), "v6": (v6,)}[family]
    return PeerSpec(bytes([key]) * 32, ips)


# One step: set a peer's addresses (adding it if new), or remove it.
STEP = st.one_of(
    st.tuples(st.just("set"), st.integers(0, KEYS - 1), OFFSETS, FAMILIES),
    st.tuples(st.just("remove"), st.integers(0, KEYS - 1), st.just(0), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(passes=st.lists(st.tuples(st.lists(STEP, max_size=6), st.randoms()), max_size=12))
def test_cache_equals_a_full_rebuild_after_any_changes(
    passes: list[tuple[list[tuple[str, int, int, str]], random.Random]],
) -> None:
    cache = ElementCache(EGRESS)
    peers: dict[int, PeerSpec] = {}
    previous = desired_elements(EGRESS, [])
    for steps, rng in passes:
        for action, key, offset, family in steps:
            if action == "remove":
                peers.pop(key, None)
                continue
            candidate = spec(key, offset, family)
            if not set(tunnel_addresses(candidate)) & _others(peers, key):
                peers[key] = candidate  # tunnel addresses stay unique, as the pools keep them
        order = list(peers.values())
        rng.shuffle(order)
        changes = cache.update(order)
        full = desired_elements(EGRESS, [tunnel_addresses(p) for p in order])
        assert cache.elements() == full
        assert cache.count == full.count
        assert changes == plan_elements(full, previous.ipv4, previous.ipv6)
        previous = full


def _others(peers: dict[int, PeerSpec], but: int) -> set[str]:
    return {a for k, p in peers.items() if k != but for a in tunnel_addresses(p)}


def test_a_pass_with_one_changed_peer_rebuilds_one_peer() -> None:
    cache = ElementCache(EGRESS)
    peers = [spec(k, k + 2, "both") for k in range(KEYS)]
    cache.update(peers)
    assert cache.rebuilt == KEYS
    cache.update(peers)
    assert cache.rebuilt == 0
    moved = [*peers[:-1], spec(KEYS - 1, 60, "both")]
    changes = cache.update(moved)
    assert cache.rebuilt == 1
    assert (sorted(changes.add4), changes.delete4) == (["10.100.0.60"], ("10.100.0.13",))
    cache.update(moved[1:])
    assert cache.rebuilt == 0 and cache.count == KEYS - 1
