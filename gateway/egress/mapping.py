"""The deterministic port-block mapping of DESIGN section 8 (RFC 7422): pure, no I/O.

A tunnel address `t` in IPv4 pool `P` has offset `o = int(t) - int(P.network_address)`.
With `per = (last - first + 1) // block_size` blocks per public address, its traffic
leaves from `addresses[o // per]`, ports `first + (o % per) * block_size` to
`+ block_size - 1`. The gateway, the regulator's verifier and the benchmarks all
call these functions, so the three can never disagree.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

IPv4Address = ipaddress.IPv4Address
IPv6Address = ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MIN_BLOCK_SIZE = 64
Ipv6Mode = Literal["nat66", "routed", "off"]
IPV6_MODES: tuple[Ipv6Mode, ...] = ("nat66", "routed", "off")

DEFAULT_BLOCKED: tuple[str, ...] = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
)


class EgressConfigError(ValueError):
    """Egress settings that cannot work; the message names the numbers and what to change."""


@dataclass(frozen=True)
class PortBlock:
    """Where one peer's traffic leaves: a public address and an inclusive port range."""

    address: IPv4Address | IPv6Address
    first_port: int
    last_port: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": str(self.address),
            "first_port": self.first_port,
            "last_port": self.last_port,
        }


@dataclass(frozen=True)
class Derivation:
    """The answer to "whose was this public address and port?" before any log lookup."""

    gateway_id: str
    tunnel_ip: IPv4Address
    first_port: int
    last_port: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "gateway_id": self.gateway_id,
            "tunnel_ip": str(self.tunnel_ip),
            "first_port": self.first_port,
            "last_port": self.last_port,
        }


def parse_ports(text: str) -> tuple[int, int]:
    """'1024-65535' → (1024, 65535); raises EgressConfigError naming egress.ports."""
    first_text, sep, last_text = text.partition("-")
    if not sep or not _is_ascii_number(first_text) or not _is_ascii_number(last_text):
        raise EgressConfigError(
            f"egress.ports must be 'first-last', e.g. '1024-65535'; got {text!r}"
        )
    first, last = int(first_text), int(last_text)
    if not 1 <= first <= last <= 65535:
        raise EgressConfigError(
            f"egress.ports {text!r} must satisfy 1 <= first <= last <= 65535"
        )
    return first, last


def _is_ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5


def auto_block_size(pool_size: int, address_count: int, span: int) -> int:
    """The largest block size whose blocks, over `address_count` addresses, cover the pool."""
    if address_count < 1:
        return 0
    per_needed = -(-pool_size // address_count)  # ceiling division
    return span // per_needed


def largest_pool_prefix(address_count: int, span: int) -> int:
    """The IPv4 prefix of the largest pool `address_count` addresses cover with 64-port blocks."""
    covered = (span // MIN_BLOCK_SIZE) * address_count
    size = 1 << (covered.bit_length() - 1)
    return max(32 - (size.bit_length() - 1), 8)


@dataclass(frozen=True)
class EgressMap:
    """One gateway's egress settings, resolved: the content of an `egress.configured` event."""

    gateway_id: str
    pool: ipaddress.IPv4Network
    addresses: tuple[IPv4Address, ...]
    first_port: int
    last_port: int
    block_size: int
    ipv6: Ipv6Mode
    pool6: ipaddress.IPv6Network | None
    addresses6: tuple[IPv6Address, ...]
    blocked: tuple[Network, ...]

    @property
    def blocks_per_address(self) -> int:
        return (self.last_port - self.first_port + 1) // self.block_size

    @property
    def capacity(self) -> int:
        return self.blocks_per_address * len(self.addresses)

    @property
    def translates_ipv6(self) -> bool:
        return self.ipv6 == "nat66" and self.pool6 is not None and bool(self.addresses6)

    @property
    def forwards_ipv6(self) -> bool:
        return self.pool6 is not None and (self.ipv6 == "routed" or self.translates_ipv6)

    def offset_of(self, tunnel_ip: IPv4Address) -> int | None:
        if tunnel_ip not in self.pool:
            return None
        return int(tunnel_ip) - int(self.pool.network_address)

    def _block_at(self, offset: int) -> tuple[int, int, int]:
        """(address index, first port, last port) of the block at a pool offset."""
        per = self.blocks_per_address
        first = self.first_port + (offset % per) * self.block_size
        return offset // per, first, first + self.block_size - 1

    def block_of(self, tunnel_ip: IPv4Address) -> PortBlock | None:
        """The IPv4 block of a tunnel address, or None outside the pool."""
        offset = self.offset_of(tunnel_ip)
        if offset is None:
            return None
        index, first, last = self._block_at(offset)
        return PortBlock(self.addresses[index], first, last)

    def block6_of(self, tunnel_ip: IPv4Address) -> PortBlock | None:
        """With nat66, the IPv6 block given by the peer's IPv4 offset."""
        offset = self.offset_of(tunnel_ip)
        if offset is None or not self.translates_ipv6:
            return None
        index, first, last = self._block_at(offset)
        return PortBlock(self.addresses6[index], first, last)

    def derive(self, ip: IPv4Address | IPv6Address, port: int) -> Derivation | None:
        """Invert the mapping: which tunnel address owns `ip:port`, if any block holds it."""
        if isinstance(ip, IPv4Address) and ip in self.addresses:
            index = self.addresses.index(ip)
        elif isinstance(ip, IPv6Address) and self.translates_ipv6 and ip in self.addresses6:
            index = self.addresses6.index(ip)
        else:
            return None
        if not self.first_port <= port <= self.last_port:
            return None
        block = (port - self.first_port) // self.block_size
        if block >= self.blocks_per_address:
            return None  # the ports left over after the last whole block are never used
        offset = index * self.blocks_per_address + block
        if offset >= self.pool.num_addresses:
            return None
        first = self.first_port + block * self.block_size
        return Derivation(
            gateway_id=self.gateway_id,
            tunnel_ip=self.pool.network_address + offset,
            first_port=first,
            last_port=first + self.block_size - 1,
        )

    def event_fields(self) -> dict[str, Any]:
        """The `egress.configured` payload (DESIGN section 8), canonical-JSON friendly."""
        fields: dict[str, Any] = {
            "gateway_id": self.gateway_id,
            "pool": str(self.pool),
            "addresses": [str(a) for a in self.addresses],
            "ports": f"{self.first_port}-{self.last_port}",
            "block_size": self.block_size,
            "ipv6": self.ipv6,
            "blocked": [str(n) for n in self.blocked],
        }
        if self.pool6 is not None:
            fields["pool6"] = str(self.pool6)
        if self.addresses6:
            fields["addresses6"] = [str(a) for a in self.addresses6]
        return fields

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> EgressMap:
        """Rebuild the mapping from a logged `egress.configured` event (the verifier's view)."""
        try:
            first, last = parse_ports(event["ports"])
            ipv6 = event["ipv6"]
            if ipv6 not in IPV6_MODES:
                raise EgressConfigError(f"ipv6 mode {ipv6!r} is not one of {IPV6_MODES}")
            block_size = event["block_size"]
            if isinstance(block_size, bool) or not isinstance(block_size, int):
                raise EgressConfigError("block_size must be an integer")
            pool6 = event.get("pool6")
            return check(
                cls(
                    gateway_id=str(event["gateway_id"]),
                    pool=ipaddress.IPv4Network(event["pool"]),
                    addresses=tuple(IPv4Address(a) for a in event["addresses"]),
                    first_port=first,
                    last_port=last,
                    block_size=block_size,
                    ipv6=ipv6,
                    pool6=ipaddress.IPv6Network(pool6) if pool6 is not None else None,
                    addresses6=tuple(IPv6Address(a) for a in event.get("addresses6", [])),
                    blocked=tuple(ipaddress.ip_network(n) for n in event["blocked"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EgressConfigError):
                raise
            raise EgressConfigError(f"not a valid egress.configured event: {exc}") from exc


def check(egress: EgressMap) -> EgressMap:
    """Refuse a mapping that cannot give every pool address its own block."""
    span = egress.last_port - egress.first_port + 1
    pool_size = egress.pool.num_addresses
    if not egress.addresses:
        raise EgressConfigError(
            "egress.addresses is empty: give at least one public IPv4 address of this gateway"
        )
    if len(set(egress.addresses)) != len(egress.addresses):
        raise EgressConfigError("egress.addresses lists an address twice")
    if egress.block_size < MIN_BLOCK_SIZE:
        best = largest_pool_prefix(len(egress.addresses), span)
        raise EgressConfigError(
            f"egress: blocks of {egress.block_size} ports are below the minimum of "
            f"{MIN_BLOCK_SIZE}; pool {egress.pool} has {pool_size} addresses and "
            f"{len(egress.addresses)} egress address(es) with ports "
            f"{egress.first_port}-{egress.last_port} ({span} ports) cover at most "
            f"{(span // MIN_BLOCK_SIZE) * len(egress.addresses)} with "
            f"{MIN_BLOCK_SIZE}-port blocks; "
            f"add addresses to egress.addresses (at least "
            f"{-(-pool_size // (span // MIN_BLOCK_SIZE))} for this pool) or use a pool of "
            f"at most /{best} in network.pools"
        )
    if egress.block_size > span:
        raise EgressConfigError(
            f"egress.block_size {egress.block_size} is larger than the port range "
            f"{egress.first_port}-{egress.last_port} ({span} ports)"
        )
    if egress.capacity < pool_size:
        raise EgressConfigError(
            f"egress: {len(egress.addresses)} address(es) x {egress.blocks_per_address} blocks "
            f"of {egress.block_size} ports = {egress.capacity} blocks, fewer than the "
            f"{pool_size} addresses of pool {egress.pool}; add addresses to egress.addresses, "
            f"use a smaller egress.block_size (or \"auto\"), or a smaller pool in network.pools"
        )
    if egress.translates_ipv6 and len(egress.addresses6) * egress.blocks_per_address < pool_size:
        raise EgressConfigError(
            f"egress.addresses6: {len(egress.addresses6)} address(es) give "
            f"{len(egress.addresses6) * egress.blocks_per_address} blocks, fewer than the "
            f"{pool_size} addresses of pool {egress.pool}; list as many IPv6 addresses as "
            f"egress.addresses needs"
        )
    for address in egress.addresses:
        if address in egress.pool:
            raise EgressConfigError(
                f"egress.addresses: {address} lies inside the tunnel pool {egress.pool}"
            )
    for address6 in egress.addresses6:
        if egress.pool6 is not None and address6 in egress.pool6:
            raise EgressConfigError(
                f"egress.addresses6: {address6} lies inside the tunnel pool {egress.pool6}"
            )
    return egress


def resolve(
    *,
    gateway_id: str,
    pools: Sequence[Network],
    addresses: Sequence[str],
    ports: str,
    block_size: int | Literal["auto"],
    ipv6: Ipv6Mode,
    addresses6: Sequence[str],
    blocked: Sequence[str],
) -> EgressMap:
    """Settings (with any host defaults already filled in) → a checked EgressMap."""
    pool4 = next((p for p in pools if isinstance(p, ipaddress.IPv4Network)), None)
    pool6 = next((p for p in pools if isinstance(p, ipaddress.IPv6Network)), None)
    if pool4 is None:
        raise EgressConfigError("egress needs an IPv4 pool in network.pools")
    first, last = parse_ports(ports)
    parsed = tuple(_address4("egress.addresses", a) for a in addresses)
    parsed6 = tuple(_address6("egress.addresses6", a) for a in addresses6)
    if block_size == "auto":
        size = auto_block_size(pool4.num_addresses, len(parsed), last - first + 1)
    else:
        size = block_size
    blocked_nets: list[Network] = []
    for text in (*blocked, *(str(p) for p in pools)):
        try:
            net = ipaddress.ip_network(text)
        except ValueError as exc:
            raise EgressConfigError(f"egress.blocked: {text!r} is not a CIDR network") from exc
        if net not in blocked_nets:
            blocked_nets.append(net)
    return check(
        EgressMap(
            gateway_id=gateway_id,
            pool=pool4,
            addresses=parsed,
            first_port=first,
            last_port=last,
            block_size=size,
            ipv6=ipv6,
            pool6=pool6,
            addresses6=parsed6,
            blocked=tuple(blocked_nets),
        )
    )


def _address4(setting: str, text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError as exc:
        raise EgressConfigError(f"{setting}: {text!r} is not an IPv4 address") from exc


def _address6(setting: str, text: str) -> IPv6Address:
    try:
        return IPv6Address(text)
    except ValueError as exc:
        raise EgressConfigError(f"{setting}: {text!r} is not an IPv6 address") from exc
