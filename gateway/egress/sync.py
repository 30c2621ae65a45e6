"""Keeps the vpngw nftables table equal to what the peers and settings call for."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog

from gateway.egress.elements import ElementCache
from gateway.egress.nft import EgressError, Forwarding, Nft
from gateway.egress.ruleset import (
    DesiredElements,
    ElementChanges,
    Policy,
    build_table,
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


class EgressSync:
    """Keeps the table in line with the peers, cheaply most of the time.

    A full check (sysctls, the table's rules, every element read back from the kernel)
    runs at least every `full_check_seconds` and after any failure: it rebuilds the table
    if it is missing or was changed by hand, else applies the element difference. Between
    full checks a pass only applies the difference from what it last applied, in one
    `nft -f` transaction: reading 10,000 elements back costs nft far more than the change.
    The desired elements are kept per peer (gateway.egress.elements), so such a pass
    builds elements only for the peers that changed and never diffs the whole maps.
    """

    def __init__(
        self,
        *,
        policy: Policy,
        nft: Nft,
        forwarding: Forwarding,
        full_check_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._policy = policy
        self._nft = nft
        self._forwarding = forwarding
        self._full_check_seconds = full_check_seconds
        self._monotonic = monotonic
        self._fingerprint: str | None = None
        self._elements = ElementCache(policy.egress)
        # The kernel holds what the cache held after the last pass, so a pass may apply
        # only its own changes. False at start and after any failure.
        self._in_step = False
        self._last_full_check = -float("inf")
        self.status = EgressStatus(ok=False, detail="egress not applied yet")

    @property
    def policy(self) -> Policy:
        return self._policy

    async def sync(self, desired_peers: Sequence[PeerSpec]) -> None:
        changes = self._elements.update(desired_peers)
        try:
            if self._full_check_due():
                await self._full_check(self._elements.elements())
            else:
                await self._apply_difference(changes)
        except Exception as exc:
            self._in_step = False  # nothing is assumed after a failure: check in full next
            self.status = EgressStatus(ok=False, detail=f"egress: {exc}")
            raise
        egress = self._policy.egress
        mapped = self._elements.count
        self.status = EgressStatus(
            ok=True,
            detail=(
                f"{mapped} peer(s) translated on {self._policy.egress_interface} "
                f"({', '.join(str(a) for a in egress.addresses)}, "
                f"{egress.block_size}-port blocks)"
            ),
            peers_mapped=mapped,
            blocks_free=egress.capacity - mapped,
        )

    def _full_check_due(self) -> bool:
        return (
            not self._in_step
            or self._monotonic() - self._last_full_check >= self._full_check_seconds
        )

    async def _apply_difference(self, changes: ElementChanges) -> None:
        if changes.empty:
            return
        if changes.delete6:
            # Deleting an IPv6 rule needs its handle, which only the kernel knows.
            await self._full_check(self._elements.elements())
            return
        try:
            await self._nft.load(element_commands(changes, {}))
        except EgressError as exc:
            # Someone changed the map since the last pass: compare with the kernel.
            log.warning("egress.fast_path.refused", error=str(exc))
            await self._full_check(self._elements.elements())
            return
        log.info("egress.elements.applied", changes=changes.count)

    async def _full_check(self, desired: DesiredElements) -> None:
        await self._reconcile_with_kernel(desired)
        self._in_step = True
        self._last_full_check = self._monotonic()

    async def _reconcile_with_kernel(self, desired: DesiredElements) -> None:
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
        self._in_step = False
