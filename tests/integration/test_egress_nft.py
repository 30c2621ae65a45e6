"""The vpngw table on a real nftables in a network namespace: load, diff, heal, isolation."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from gateway.egress.mapping import resolve
from gateway.egress.nft import Nft
from gateway.egress.ruleset import MAP4, Policy, desired_elements, parse_map_elements
from gateway.egress.sync import EgressSync
from gateway.wireguard.backend import PeerSpec
from tests.components import require_or_skip
from tests.integration.netns import Namespace, run


class NoForwarding:
    """Forwarding is the e2e tests' business; here only nftables is under test."""

    async def enable(self, interfaces: tuple[str, ...], *, ipv6: bool) -> None:
        return None


@pytest.fixture
def ns() -> Iterator[Namespace]:
    require_or_skip(os.geteuid() == 0, "needs root for network namespaces")
    require_or_skip(shutil.which("nft") is not None, "nft is not installed")
    namespace = Namespace.create("nft")
    try:
        yield namespace
    finally:
        namespace.delete()


def policy() -> Policy:
    egress = resolve(
        gateway_id="gw1",
        pools=[ipaddress.ip_network("10.100.0.0/23"), ipaddress.ip_network("fd00:100::/64")],
        addresses=("198.51.100.1",),
        ports="1024-65535",
        block_size="auto",
        ipv6="nat66",
        addresses6=("2001:db8::1",),
        blocked=("10.0.0.0/8", "172.16.0.0/12", "fc00::/7"),
    )
    return Policy(egress=egress, wireguard_interface="wgt0", egress_interface="up0",
                  gateway_addresses=("10.100.0.1", "fd00:100::1"))


def peer(n: int) -> PeerSpec:
    return PeerSpec(bytes([n]) * 32, (f"10.100.0.{n}/32", f"fd00:100::{n:x}/128"))


def elements(ns: Namespace) -> dict[str, str]:
    listing = json.loads(run(*ns.cmd("nft", "-j", "list", "map", "inet", "vpngw", MAP4)))
    return {k: f"{b.address}:{b.first_port}-{b.last_port}"
            for k, b in parse_map_elements(listing).items()}


async def test_table_loads_and_map_follows_peers(ns: Namespace) -> None:
    sync = EgressSync(policy=policy(), nft=Nft(ns.cmd("nft")), forwarding=NoForwarding())  # type: ignore[arg-type]
    await sync.sync([peer(2), peer(3)])
    want = desired_elements(policy().egress, [("10.100.0.2",), ("10.100.0.3",)])
    assert elements(ns) == {k: f"{b.address}:{b.first_port}-{b.last_port}"
                            for k, b in want.ipv4.items()}
    assert sync.status.ok and sync.status.peers_mapped == 2
    await sync.sync([peer(3), peer(4)])
    assert set(elements(ns)) == {"10.100.0.3", "10.100.0.4"}


def syncer(ns: Namespace, **kw: Any) -> EgressSync:
    return EgressSync(policy=policy(), nft=Nft(ns.cmd("nft")), forwarding=NoForwarding(),  # type: ignore[arg-type]
                      **kw)


async def test_drift_is_healed(ns: Namespace) -> None:
    sync = syncer(ns, full_check_seconds=0)  # every pass reads the kernel back
    await sync.sync([peer(2), peer(3)])
    # An element deleted by hand comes back.
    run(*ns.cmd("nft", "delete", "element", "inet", "vpngw", MAP4, "{ 10.100.0.2 }"))
    await sync.sync([peer(2), peer(3)])
    assert set(elements(ns)) == {"10.100.0.2", "10.100.0.3"}
    # A flushed table (rules gone) is rebuilt whole.
    run(*ns.cmd("nft", "flush", "table", "inet", "vpngw"))
    await sync.sync([peer(2), peer(3)])
    ruleset = run(*ns.cmd("nft", "list", "table", "inet", "vpngw"))
    assert "snat ip to ip saddr map @snat4" in ruleset
    assert set(elements(ns)) == {"10.100.0.2", "10.100.0.3"}
    # A deleted table too.
    run(*ns.cmd("nft", "delete", "table", "inet", "vpngw"))
    await sync.sync([peer(2)])
    assert set(elements(ns)) == {"10.100.0.2"}


async def test_fast_passes_apply_differences_and_full_checks_heal(ns: Namespace) -> None:
    now = [0.0]
    sync = syncer(ns, full_check_seconds=30, monotonic=lambda: now[0])
    await sync.sync([peer(2), peer(3)])  # first pass: full
    run(*ns.cmd("nft", "delete", "element", "inet", "vpngw", MAP4, "{ 10.100.0.2 }"))
    now[0] = 10.0
    await sync.sync([peer(2), peer(3), peer(4)])  # fast: only adds 10.100.0.4
    assert set(elements(ns)) == {"10.100.0.3", "10.100.0.4"}
    rules = run(*ns.cmd("nft", "list", "chain", "inet", "vpngw", "nat66"))
    assert "fd00:100::4" in rules
    now[0] = 31.0
    await sync.sync([peer(2), peer(3), peer(4)])  # full check: the hand deletion is healed
    assert set(elements(ns)) == {"10.100.0.2", "10.100.0.3", "10.100.0.4"}
    now[0] = 32.0
    await sync.sync([peer(3)])  # removing an IPv6 peer needs rule handles: read back
    assert set(elements(ns)) == {"10.100.0.3"}
    rules = run(*ns.cmd("nft", "list", "chain", "inet", "vpngw", "nat66"))
    assert "fd00:100::4" not in rules and "fd00:100::3" in rules


async def test_other_tables_are_never_touched(ns: Namespace) -> None:
    run(*ns.cmd("nft", "add", "table", "inet", "ops"))
    run(*ns.cmd("nft", "add", "chain", "inet", "ops", "keep"))
    sync = EgressSync(policy=policy(), nft=Nft(ns.cmd("nft")), forwarding=NoForwarding())  # type: ignore[arg-type]
    await sync.sync([peer(2)])
    await sync.rebuild(desired_elements(policy().egress, [("10.100.0.2",)]), why="test")
    await sync.remove()
    tables = run(*ns.cmd("nft", "list", "tables"))
    assert "table inet ops" in tables and "vpngw" not in tables


async def test_a_refused_ruleset_changes_nothing(ns: Namespace) -> None:
    sync = EgressSync(policy=policy(), nft=Nft(ns.cmd("nft")), forwarding=NoForwarding())  # type: ignore[arg-type]
    await sync.sync([peer(2)])
    before = run(*ns.cmd("nft", "list", "ruleset"))
    with pytest.raises(Exception, match="nft"):
        await Nft(ns.cmd("nft")).load(
            "table inet vpngw\ndelete table inet vpngw\ntable inet vpngw { chain x { nonsense } }\n"
        )
    assert run(*ns.cmd("nft", "list", "ruleset")) == before


async def test_fast_passes_follow_moves_and_handovers_like_a_full_rebuild(ns: Namespace) -> None:
    """Between full checks only the changed peers' elements are built and applied; the map
    still ends equal to a full rebuild when addresses move or pass to another peer."""
    sync = syncer(ns, full_check_seconds=3600, monotonic=lambda: 0.0)

    def v4(key: int, n: int) -> PeerSpec:
        return PeerSpec(bytes([key]) * 32, (f"10.100.0.{n}/32",))

    passes = [
        [v4(1, 2), v4(2, 3), v4(3, 4)],
        [v4(1, 2), v4(2, 5), v4(3, 4)],  # peer 2 moves from .3 to .5
        [v4(4, 5), v4(1, 2), v4(3, 4)],  # .5 passes from peer 2 to peer 4
        [v4(3, 4)],
    ]
    for wanted in passes:
        await sync.sync(wanted)
        full = desired_elements(policy().egress, [(p.allowed_ips[0][:-3],) for p in wanted])
        assert elements(ns) == {k: f"{b.address}:{b.first_port}-{b.last_port}"
                                for k, b in full.ipv4.items()}
        assert sync.status.peers_mapped == len(wanted)
