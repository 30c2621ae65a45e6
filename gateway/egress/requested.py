"""A registered gateway's egress settings (from the ops API) → its section 8 mapping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from gateway.egress.mapping import DEFAULT_BLOCKED, EgressConfigError, EgressMap, Network, resolve
from provisioning.errors import InvalidInput

EGRESS_FIELDS = frozenset({"interface", "addresses", "ports", "block_size", "ipv6", "addresses6"})


def _strings(field: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(field, "must be a list of address strings")
    return tuple(value)


def parse_egress(body: object) -> dict[str, Any]:
    """The settings as stored and shown: unknown fields refused, each one checked for type."""
    if not isinstance(body, dict):
        raise InvalidInput("egress", "must be an object {interface?, addresses, ports?, ...}")
    unknown = sorted(set(body) - EGRESS_FIELDS)
    if unknown:
        raise InvalidInput(f"egress.{unknown[0]}", f"unknown field; use {sorted(EGRESS_FIELDS)}")
    interface = body.get("interface", "")
    if not isinstance(interface, str) or len(interface) > 15:
        raise InvalidInput("egress.interface", "must be an interface name (at most 15 chars)")
    if "addresses" not in body:
        raise InvalidInput("egress.addresses", "required: the gateway's public IPv4 addresses")
    block: int | Literal["auto"] = body.get("block_size", "auto")
    if block != "auto" and (not isinstance(block, int) or isinstance(block, bool)):
        raise InvalidInput("egress.block_size", 'must be a number of ports or "auto"')
    ports = body.get("ports", "1024-65535")
    if not isinstance(ports, str):
        raise InvalidInput("egress.ports", 'must be "first-last", e.g. "1024-65535"')
    ipv6 = body.get("ipv6", "off")
    if ipv6 not in ("nat66", "routed", "off"):
        raise InvalidInput("egress.ipv6", 'must be "nat66", "routed" or "off"')
    return {
        "interface": interface,
        "addresses": list(_strings("egress.addresses", body["addresses"])),
        "ports": ports,
        "block_size": block,
        "ipv6": ipv6,
        "addresses6": list(_strings("egress.addresses6", body.get("addresses6", []))),
    }


def egress_map(gateway_id: str, pools: Sequence[Network], settings: dict[str, Any]) -> EgressMap:
    try:
        return resolve(
            gateway_id=gateway_id,
            pools=pools,
            addresses=settings["addresses"],
            ports=settings["ports"],
            block_size=settings["block_size"],
            ipv6=settings["ipv6"],
            addresses6=settings["addresses6"],
            blocked=DEFAULT_BLOCKED,
        )
    except EgressConfigError as exc:
        raise InvalidInput("egress", str(exc)) from None
