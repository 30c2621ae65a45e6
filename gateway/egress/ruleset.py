"""The vpngw nftables table as text (pure): policy, translation maps and their elements.

The table is always written whole, in one `nft -f` transaction that deletes and
re-creates it, so it is never seen half-built; peers then change one map element
each. Nothing here touches any other table.

IPv6 (nat66) differs in form only: nftables here cannot map an IPv6 source to an
address-and-port-range pair (`snat ip6 to ip6 saddr map` with interval data fails
with ENODATA), so each peer has one rule in chain `nat66` and one element in set
`peers6` instead. A peer change is still a few lines, never a rebuild.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.egress.mapping import EgressMap, PortBlock

TABLE = "vpngw"
MAP4 = "snat4"
PEERS6 = "peers6"
NAT66 = "nat66"

# key (tunnel address) → block; what a map holds and what the reconciler compares.
Elements = Mapping[str, PortBlock]


@dataclass(frozen=True)
class Policy:
    """Everything the ruleset depends on besides the peers."""

    egress: EgressMap
    wireguard_interface: str
    egress_interface: str
    gateway_addresses: tuple[str, ...]  # the gateway's own tunnel addresses


@dataclass(frozen=True)
class DesiredElements:
    ipv4: dict[str, PortBlock]
    ipv6: dict[str, PortBlock]

    @property
    def count(self) -> int:
        return len(self.ipv4)


def desired_elements(
    egress: EgressMap, tunnel_addresses: Iterable[Sequence[str]]
) -> DesiredElements:
    """One element per peer and family, from each peer's tunnel addresses.

    With nat66 the IPv6 address gets the block of the peer's IPv4 offset, so a peer
    needs both addresses; a peer outside the IPv4 pool gets nothing (and so is dropped).
    """
    v4: dict[str, PortBlock] = {}
    v6: dict[str, PortBlock] = {}
    for addresses in tunnel_addresses:
        ips = [ipaddress.ip_address(a) for a in addresses]
        ip4 = next((ip for ip in ips if isinstance(ip, ipaddress.IPv4Address)), None)
        if ip4 is None:
            continue
        block = egress.block_of(ip4)
        if block is None:
            continue
        v4[str(ip4)] = block
        block6 = egress.block6_of(ip4)
        ip6 = next((ip for ip in ips if isinstance(ip, ipaddress.IPv6Address)), None)
        if block6 is not None and ip6 is not None:
            v6[str(ip6)] = block6
    return DesiredElements(v4, v6)


def element(key: str, block: PortBlock) -> str:
    return f"{key} : {block.address} . {block.first_port}-{block.last_port}"


def nat66_rule(key: str, block: PortBlock) -> str:
    return (
        f"ip6 saddr {key} meta l4proto {{ tcp, udp, icmpv6 }} "
        f"snat ip6 to [{block.address}]:{block.first_port}-{block.last_port}"
    )


def _elements_clause(elements: Elements) -> str:
    if not elements:
        return ""
    body = ",\n      ".join(element(k, b) for k, b in sorted(elements.items()))
    return f"\n    elements = {{\n      {body}\n    }}"


def _set_clause(nets: Sequence[str]) -> str:
    return f"\n    elements = {{ {', '.join(nets)} }}" if nets else ""


def _quote(name: str) -> str:
    return json.dumps(name)


def build_table(policy: Policy, elements: DesiredElements) -> str:
    """The whole table, replacing any previous one atomically."""
    e = policy.egress
    wg, out = _quote(policy.wireguard_interface), _quote(policy.egress_interface)
    blocked4 = [str(n) for n in e.blocked if n.version == 4]
    blocked6 = [str(n) for n in e.blocked if n.version == 6]
    gw4 = [a for a in policy.gateway_addresses if ipaddress.ip_address(a).version == 4]
    gw6 = [a for a in policy.gateway_addresses if ipaddress.ip_address(a).version == 6]

    input_rules = [f"iifname {wg} ip daddr {a} icmp type echo-request accept" for a in gw4]
    input_rules += [f"iifname {wg} ip6 daddr {a} icmpv6 type echo-request accept" for a in gw6]
    input_rules.append(f"iifname {wg} drop")

    forward = [
        f"iifname {wg} oifname {wg} drop",
        f"oifname {wg} ct state established,related accept",
        f"oifname {wg} drop",
        f"iifname {wg} oifname != {out} drop",
        f"iifname {wg} ip daddr @blocked4 drop",
        f"iifname {wg} ip6 daddr @blocked6 drop",
        f"iifname {wg} ip saddr != @{MAP4} drop",
    ]
    if e.translates_ipv6:
        forward.append(f"iifname {wg} ip6 saddr != @{PEERS6} drop")
    elif e.forwards_ipv6 and e.pool6 is not None:
        forward.append(f"iifname {wg} ip6 saddr != {e.pool6} drop")
    else:
        forward.append(f"iifname {wg} meta nfproto ipv6 drop")
    forward += [
        f"iifname {wg} meta l4proto {{ tcp, udp }} accept",
        f"iifname {wg} icmp type echo-request accept",
    ]
    if e.forwards_ipv6:
        forward.append(f"iifname {wg} icmpv6 type echo-request accept")
    forward.append(f"iifname {wg} drop")

    postrouting = [
        f"oifname {out} ip saddr {e.pool} meta l4proto {{ tcp, udp, icmp }} "
        f"snat ip to ip saddr map @{MAP4}"
    ]
    if e.translates_ipv6:
        postrouting.append(f"oifname {out} ip6 saddr {e.pool6} jump {NAT66}")
    nat66 = [nat66_rule(k, b) for k, b in sorted(elements.ipv6.items()) if e.translates_ipv6]

    def chain(name: str, hook: str, kind: str, priority: str, rules: list[str]) -> str:
        lines = "\n    ".join(rules)
        return (
            f"  chain {name} {{\n"
            f"    type {kind} hook {hook} priority {priority}; policy accept;\n"
            f"    {lines}\n  }}\n"
        )

    def regular_chain(name: str, rules: list[str]) -> str:
        lines = "".join(f"\n    {r}" for r in rules)
        return f"  chain {name} {{{lines}\n  }}\n"

    return (
        # Create-then-delete makes the delete succeed whether or not the table existed;
        # the whole file is one transaction.
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        f"  set blocked4 {{\n    type ipv4_addr; flags interval; auto-merge;"
        f"{_set_clause(blocked4)}\n  }}\n"
        f"  set blocked6 {{\n    type ipv6_addr; flags interval; auto-merge;"
        f"{_set_clause(blocked6)}\n  }}\n"
        f"  map {MAP4} {{\n    type ipv4_addr : interval ipv4_addr . inet_service;"
        f"{_elements_clause(elements.ipv4)}\n  }}\n"
        f"  set {PEERS6} {{\n    type ipv6_addr;"
        f"{_set_clause(sorted(elements.ipv6) if e.translates_ipv6 else [])}\n  }}\n"
        + regular_chain(NAT66, nat66)
        + chain("input", "input", "filter", "filter", input_rules)
        + chain("forward", "forward", "filter", "filter", forward)
        + chain("postrouting", "postrouting", "nat", "srcnat", postrouting)
        + "}\n"
    )


@dataclass(frozen=True)
class ElementChanges:
    add4: dict[str, PortBlock]
    delete4: tuple[str, ...]
    add6: dict[str, PortBlock]
    delete6: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.add4 or self.delete4 or self.add6 or self.delete6)

    @property
    def count(self) -> int:
        return len(self.add4) + len(self.delete4) + len(self.add6) + len(self.delete6)


def _diff(desired: Elements, actual: Elements) -> tuple[dict[str, PortBlock], tuple[str, ...]]:
    # A changed block is a delete and an add: nft has no in-place update of map data.
    delete = tuple(sorted(k for k, b in actual.items() if desired.get(k) != b))
    add = {k: b for k, b in desired.items() if actual.get(k) != b}
    return add, delete


def plan_elements(desired: DesiredElements, actual4: Elements, actual6: Elements) -> ElementChanges:
    add4, delete4 = _diff(desired.ipv4, actual4)
    add6, delete6 = _diff(desired.ipv6, actual6)
    return ElementChanges(add4, delete4, add6, delete6)


def element_commands(changes: ElementChanges, nat66_handles: Mapping[str, int]) -> str:
    """One `nft -f` transaction for every element change: deletes first, then adds."""
    lines: list[str] = []
    if changes.delete4:
        lines.append(f"delete element inet {TABLE} {MAP4} {{ {', '.join(changes.delete4)} }}")
    if changes.delete6:
        lines.append(f"delete element inet {TABLE} {PEERS6} {{ {', '.join(changes.delete6)} }}")
        lines += [
            f"delete rule inet {TABLE} {NAT66} handle {nat66_handles[k]}"
            for k in changes.delete6
        ]
    if changes.add4:
        body = ", ".join(element(k, b) for k, b in sorted(changes.add4.items()))
        lines.append(f"add element inet {TABLE} {MAP4} {{ {body} }}")
    if changes.add6:
        lines.append(
            f"add element inet {TABLE} {PEERS6} {{ {', '.join(sorted(changes.add6))} }}"
        )
        lines += [
            f"add rule inet {TABLE} {NAT66} {nat66_rule(k, b)}"
            for k, b in sorted(changes.add6.items())
        ]
    return "\n".join(lines) + ("\n" if lines else "")


def parse_nat66_rules(listing: Mapping[str, Any]) -> dict[str, tuple[PortBlock, int]]:
    """Per-peer IPv6 rules from `nft -j list chain … nat66`: key → (block, rule handle)."""
    found: dict[str, tuple[PortBlock, int]] = {}
    for item in listing.get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        key = snat = None
        for expr in rule.get("expr", []):
            match = expr.get("match")
            if match and match.get("left", {}).get("payload", {}).get("field") == "saddr":
                key = match.get("right")
            snat = expr.get("snat", snat)
        if not isinstance(key, str) or not snat:
            continue
        ports = snat.get("port")
        first, last = ports["range"] if isinstance(ports, dict) else (ports, ports)
        block = PortBlock(ipaddress.ip_address(snat["addr"]), int(first), int(last))
        found[key] = (block, int(rule["handle"]))
    return found

def parse_map_elements(listing: Mapping[str, Any]) -> dict[str, PortBlock]:
    """Elements of one map from `nft -j list map` output."""
    found: dict[str, PortBlock] = {}
    for item in listing.get("nftables", []):
        body = item.get("map")
        if not body:
            continue
        for key, data in body.get("elem", []):
            address, ports = data["concat"]
            if isinstance(ports, dict):
                first, last = ports["range"]
            else:  # a one-port block is listed as a bare number
                first = last = ports
            found[str(key)] = PortBlock(ipaddress.ip_address(address), int(first), int(last))
    return found


def rules_fingerprint(listing: Mapping[str, Any]) -> str:
    """Chains, rules and set declarations of a terse table listing, without handles.

    Compared after every pass: a rule edited, deleted or flushed by hand changes it,
    and the reconciler then rewrites the whole table. The per-peer nat66 rules are
    left out: they change with the peers and are compared one by one instead.
    """
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "handle"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    kept = [
        strip(item)
        for item in listing.get("nftables", [])
        if "metainfo" not in item and item.get("rule", {}).get("chain") != NAT66
    ]
    return json.dumps(kept, sort_keys=True)
