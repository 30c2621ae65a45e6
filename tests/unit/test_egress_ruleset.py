"""The nftables text vpngw writes, the element diff, and reading `nft -j` back."""

from __future__ import annotations

import ipaddress

from gateway.egress.mapping import PortBlock, resolve
from gateway.egress.ruleset import (
    Policy,
    build_table,
    desired_elements,
    element_commands,
    parse_map_elements,
    parse_nat66_rules,
    plan_elements,
    rules_fingerprint,
)


def egress(ipv6: str = "nat66", addresses6: tuple[str, ...] = ("2001:db8::1",)):  # type: ignore[no-untyped-def]
    return resolve(
        gateway_id="gw1",
        pools=[ipaddress.ip_network("10.100.0.0/23"), ipaddress.ip_network("fd00:100::/64")],
        addresses=("198.51.100.1",),
        ports="1024-65535",
        block_size="auto",
        ipv6=ipv6,  # type: ignore[arg-type]
        addresses6=addresses6,
        blocked=("10.0.0.0/8", "fc00::/7"),
    )


def policy(**kw: object) -> Policy:
    return Policy(egress=egress(**kw), wireguard_interface="wg-x", egress_interface="up0",  # type: ignore[arg-type]
                  gateway_addresses=("10.100.0.1", "fd00:100::1"))


PEERS = [("10.100.0.2", "fd00:100::2"), ("10.100.0.3", "fd00:100::9")]


def test_elements_one_per_peer_and_family_with_the_ipv4_offset() -> None:
    d = desired_elements(egress(), PEERS)
    assert d.ipv4["10.100.0.2"] == PortBlock(ipaddress.ip_address("198.51.100.1"), 1276, 1401)
    # The IPv6 address gets the block of the peer's IPv4 offset, not its own.
    assert d.ipv6["fd00:100::9"].first_port == d.ipv4["10.100.0.3"].first_port
    assert d.count == 2


def test_peer_outside_the_pool_gets_no_element() -> None:
    assert desired_elements(egress(), [("10.200.0.2",), ("fd00:100::5",)]).count == 0


def test_table_replaces_itself_and_holds_the_policy() -> None:
    text = build_table(policy(), desired_elements(egress(), PEERS))
    assert text.startswith("table inet vpngw\ndelete table inet vpngw\ntable inet vpngw {")
    for rule in (
        'iifname "wg-x" oifname "wg-x" drop',  # tunnel to tunnel
        'iifname "wg-x" ip daddr @blocked4 drop',
        'iifname "wg-x" oifname != "up0" drop',
        'iifname "wg-x" ip saddr != @snat4 drop',  # nothing untranslated leaves
        'iifname "wg-x" ip daddr 10.100.0.1 icmp type echo-request accept',
        'oifname "wg-x" ct state established,related accept',
        'snat ip to ip saddr map @snat4',
        'oifname "up0" ip6 saddr fd00:100::/64 jump nat66',
        "ip6 saddr fd00:100::2 meta l4proto { tcp, udp, icmpv6 } "
        "snat ip6 to [2001:db8::1]:1276-1401",
        'iifname "wg-x" ip6 saddr != @peers6 drop',
        "10.100.0.2 : 198.51.100.1 . 1276-1401",
    ):
        assert rule in text, rule
    assert "10.100.0.0/23" in text and "fc00::/7" in text


def test_ipv6_off_drops_all_ipv6_from_the_tunnel() -> None:
    text = build_table(policy(ipv6="off", addresses6=()), desired_elements(egress(), PEERS))
    assert 'iifname "wg-x" meta nfproto ipv6 drop' in text
    assert "snat ip6" not in text


def test_ipv6_routed_forwards_the_pool_untranslated() -> None:
    text = build_table(policy(ipv6="routed", addresses6=()), desired_elements(egress(), PEERS))
    assert 'iifname "wg-x" ip6 saddr != fd00:100::/64 drop' in text
    assert "snat ip6" not in text


def test_plan_changes_only_what_differs() -> None:
    want = desired_elements(egress(), PEERS)
    actual4 = {"10.100.0.2": want.ipv4["10.100.0.2"],
               "10.100.0.7": PortBlock(ipaddress.ip_address("198.51.100.1"), 1, 64),
               "10.100.0.3": PortBlock(ipaddress.ip_address("198.51.100.1"), 1, 64)}
    changes = plan_elements(want, actual4, dict(want.ipv6))
    assert set(changes.add4) == {"10.100.0.3"}  # wrong block: replaced
    assert changes.delete4 == ("10.100.0.3", "10.100.0.7")
    assert not changes.add6 and not changes.delete6
    text = element_commands(changes, {})
    assert text.index("delete element") < text.index("add element")
    assert plan_elements(want, dict(want.ipv4), dict(want.ipv6)).empty


def test_parse_map_listing() -> None:
    listing = {"nftables": [{"metainfo": {}}, {"map": {"name": "snat4", "elem": [
        ["10.100.0.2", {"concat": ["198.51.100.1", {"range": [1024, 1149]}]}],
        ["10.100.0.3", {"concat": ["198.51.100.1", 1150]}],
    ]}}]}
    assert parse_map_elements(listing) == {
        "10.100.0.2": PortBlock(ipaddress.ip_address("198.51.100.1"), 1024, 1149),
        "10.100.0.3": PortBlock(ipaddress.ip_address("198.51.100.1"), 1150, 1150),
    }


def test_nat66_rules_parse_and_delete_by_handle() -> None:
    listing = {"nftables": [{"rule": {"chain": "nat66", "handle": 7, "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}},
                   "right": "fd00:100::2"}},
        {"snat": {"family": "ip6", "addr": "2001:db8::1", "port": {"range": [1276, 1401]}}},
    ]}}]}
    rules = parse_nat66_rules(listing)
    assert rules == {"fd00:100::2": (PortBlock(ipaddress.ip_address("2001:db8::1"), 1276, 1401),
                                     7)}
    want = desired_elements(egress(), [])
    changes = plan_elements(want, {}, {"fd00:100::2": rules["fd00:100::2"][0]})
    text = element_commands(changes, {"fd00:100::2": 7})
    assert "delete rule inet vpngw nat66 handle 7" in text
    assert "delete element inet vpngw peers6 { fd00:100::2 }" in text


def test_fingerprint_ignores_handles_but_not_rules() -> None:
    a = {"nftables": [{"rule": {"chain": "forward", "handle": 4, "expr": [{"drop": None}]}}]}
    b = {"nftables": [{"rule": {"chain": "forward", "handle": 9, "expr": [{"drop": None}]}}]}
    c = {"nftables": [{"rule": {"chain": "forward", "handle": 4, "expr": [{"accept": None}]}}]}
    assert rules_fingerprint(a) == rules_fingerprint(b) != rules_fingerprint(c)
