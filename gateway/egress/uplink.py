"""Finds the host's default-route interface and addresses: the egress defaults."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from pyroute2 import IPRoute


@dataclass(frozen=True)
class Uplink:
    interface: str
    addresses: tuple[str, ...]  # IPv4, primary first
    addresses6: tuple[str, ...]  # global IPv6


def _default_interface(ipr: IPRoute, family: int) -> int | None:
    for route in ipr.get_default_routes(family=family):
        index = route.get_attr("RTA_OIF")
        if index:
            return int(index)
    return None


def _addresses(ipr: IPRoute, index: int, family: int) -> tuple[str, ...]:
    found = []
    for msg in ipr.get_addr(index=index, family=family):
        text = msg.get_attr("IFA_ADDRESS")
        if text and (family == socket.AF_INET or ipaddress.ip_address(text).is_global):
            found.append(text)
    return tuple(found)


def _find() -> Uplink | None:
    with IPRoute() as ipr:
        index = _default_interface(ipr, socket.AF_INET)
        if index is None:
            return None
        name = ipr.get_links(index)[0].get_attr("IFLA_IFNAME")
        addresses = _addresses(ipr, index, socket.AF_INET)
        index6 = _default_interface(ipr, socket.AF_INET6)
        addresses6 = _addresses(ipr, index6, socket.AF_INET6) if index6 == index else ()
        if not addresses:
            return None
        return Uplink(interface=str(name), addresses=addresses[:1], addresses6=addresses6[:1])


async def find_uplink() -> Uplink | None:
    """The default route's interface and its first addresses, or None without one."""
    return await asyncio.to_thread(_find)


def interface_networks(name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Networks configured on an interface; raises LookupError if it does not exist."""
    with IPRoute() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            raise LookupError(name)
        nets = []
        for msg in ipr.get_addr(index=indexes[0]):
            address = msg.get_attr("IFA_ADDRESS")
            if address:
                nets.append(ipaddress.ip_network(f"{address}/{msg['prefixlen']}", strict=False))
        return tuple(nets)
