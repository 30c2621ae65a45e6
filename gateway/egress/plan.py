"""Egress settings resolved against this host: what the gateway will log and apply."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from gateway.egress.mapping import EgressConfigError, EgressMap, Network, resolve
from gateway.egress.uplink import Uplink, find_uplink, interface_networks
from gateway.settings import Settings


@dataclass(frozen=True)
class EgressPlan:
    egress: EgressMap
    interface: str


def plan_from(settings: Settings, uplink: Uplink | None) -> EgressPlan:
    """Pure: settings, with the uplink filling whatever they leave empty."""
    e = settings.egress
    interface = e.interface or (uplink.interface if uplink else "")
    addresses = e.addresses or (uplink.addresses if uplink else ())
    addresses6 = e.addresses6 or (uplink.addresses6 if uplink and e.ipv6 == "nat66" else ())
    if not interface or not addresses:
        raise EgressConfigError(
            "egress: this host has no IPv4 default route to take the egress interface and "
            "address from; set egress.interface and egress.addresses (or egress.enabled = false "
            "to carry no traffic)"
        )
    egress = resolve(
        gateway_id=settings.network.gateway_id,
        pools=settings.pool_networks,
        addresses=addresses,
        ports=e.ports,
        block_size=e.block_size,
        ipv6=e.ipv6,
        addresses6=addresses6,
        blocked=e.blocked,
    )
    return EgressPlan(egress=egress, interface=interface)


def check_interface(plan: EgressPlan) -> None:
    """The egress interface exists here and none of its networks overlaps a tunnel pool."""
    try:
        networks = interface_networks(plan.interface)
    except LookupError:
        raise EgressConfigError(
            f"egress.interface {plan.interface!r} does not exist in this network namespace; "
            "name the interface that leads to the internet"
        ) from None
    pools: list[Network] = [plan.egress.pool]
    if plan.egress.pool6 is not None:
        pools.append(plan.egress.pool6)
    for net in networks:
        for pool in pools:
            if net.version == pool.version and net.overlaps(pool):
                raise EgressConfigError(
                    f"network.pools: {pool} overlaps {net} on egress interface "
                    f"{plan.interface}; choose a tunnel pool that is not used on the uplink"
                )


async def plan_egress(settings: Settings, *, on_this_host: bool) -> EgressPlan | None:
    """None when egress is off; raises EgressConfigError with what to change.

    `on_this_host`: this process applies the plan (a WireGuard backend runs here), so
    the interface must exist and defaults may come from this host's default route.
    """
    if not settings.egress.enabled:
        return None
    e = settings.egress
    needs_uplink = not e.interface or not e.addresses
    uplink = await find_uplink() if needs_uplink else None
    plan = plan_from(settings, uplink)
    if on_this_host:
        await asyncio.to_thread(check_interface, plan)
    return plan
