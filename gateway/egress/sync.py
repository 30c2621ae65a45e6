"""Keeps the vpngw nftables table equal to what the peers and settings call for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from gateway.egress.nft import Forwarding, Nft
from gateway.egress.ruleset import (
    DesiredElements,
    Policy,
    build_table,
    desired_elements,
    element_commands,
    parse_map_elements,
    parse_nat66_rules,
    plan_elements,
    rules_fingerprint,
)
from gateway.wireguard.backend import PeerSpec

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class EgressStatus:
    """For /readyz and /metrics."""

    ok: bool
    detail: str
    peers_mapped: int = 0
    blocks_free: int = 0


def _tunnel_addresses(spec: PeerSpec) -> tuple[str, ...]:
    return tuple(prefix.split("/", 1)[0] for prefix in spec.allowed_ips)


class EgressSync:
    """One pass: the table rebuilt if missing or changed by hand, else map elements diffed."""

    def __init__(self, *, policy: Policy, nft: Nft, forwarding: Forwarding) -> None:
        self._policy = policy
        self._nft = nft
        self._forwarding = forwarding
        self._fingerprint: str | None = None
        self.status = EgressStatus(ok=False, detail="egress not applied yet")

    @property
    def policy(self) -> Policy:
        return self._policy

    async def sync(self, desired_peers: Sequence[PeerSpec]) -> None:
        desired = desired_elements(
            self._policy.egress, (_tunnel_addresses(p) for p in desired_peers)
        )
        try:
            await self._sync(desired)
        except Exception as exc:
            self.status = EgressStatus(ok=False, detail=f"egress: {exc}")
            raise
        egress = self._policy.egress
        self.status = EgressStatus(
            ok=True,
            detail=(
                f"{desired.count} peer(s) translated on {self._policy.egress_interface} "
                f"({', '.join(str(a) for a in egress.addresses)}, "
                f"{egress.block_size}-port blocks)"
            ),
            peers_mapped=desired.count,
            blocks_free=egress.capacity - desired.count,
        )

    async def _sync(self, desired: DesiredElements) -> None:
        p = self._policy
        await self._forwarding.enable(
            (p.wireguard_interface, p.egress_interface), ipv6=p.egress.forwards_ipv6
        )
        listing = await self._nft.table_listing()
        if listing is None or rules_fingerprint(listing) != self._fingerprint:
            await self.rebuild(desired, why="missing" if listing is None else "changed")
            return
        map4, chain6 = await self._nft.peer_listings()
        rules6 = parse_nat66_rules(chain6)
        actual6 = {key: block for key, (block, _handle) in rules6.items()}
        changes = plan_elements(desired, parse_map_elements(map4), actual6)
        if changes.empty:
            return
        handles = {key: handle for key, (_block, handle) in rules6.items()}
        await self._nft.load(element_commands(changes, handles))
        log.info("egress.elements.applied", changes=changes.count)

    async def rebuild(self, desired: DesiredElements, *, why: str) -> None:
        """Write the whole table with its elements in one transaction."""
        await self._nft.load(build_table(self._policy, desired))
        listing = await self._nft.table_listing()
        self._fingerprint = rules_fingerprint(listing or {})
        log.info("egress.table.written", why=why, peers=desired.count)

    async def remove(self) -> None:
        await self._nft.delete_table()
        self._fingerprint = None
