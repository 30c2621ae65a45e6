"""Every state change, run in one transaction with its audit events; shared by HTTP and CLI."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import structlog
from sqlalchemy import insert, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.agent.protocol import EventNotAllowed
from gateway.audit.canonical import format_time
from gateway.audit.outbox import append_events
from gateway.clock import Clock
from gateway.dataplane.audit_events import session_event
from gateway.dataplane.local import status_row, write_peer_status
from gateway.db import Database
from gateway.egress.mapping import EgressMap
from gateway.egress.requested import egress_map
from gateway.egress.store import configure_egress
from gateway.groupcommit import GroupCommit
from gateway.regulator import registry
from gateway.regulator.registry import RegulatorKey
from gateway.settings import Settings
from gateway.wireguard.collector import PeerStatus
from gateway.wireguard.sessions import SessionEvent
from provisioning import addresses, gateways, ids, keys, links, peers, tenants, tokens
from provisioning.errors import DomainError, IllegalTransition, UnknownPeer
from provisioning.events import Event, Outcome
from provisioning.gateways import Gateway, NewGateway, key_owners
from provisioning.peers import NewPeer, Peer, PoolPolicy
from provisioning.schema import agent_batches
from provisioning.tenants import Action, NewTenant, Tenant
from provisioning.tokens import IssuedToken, Principal, Role, TokenInfo

T = TypeVar("T")
# (peer with its server-generated private key, preshared key) → the wg-quick config text
RenderConfig = Callable[[Peer, str | None], str]

# PostgreSQL channel on which a commit that changes a gateway's desired peers wakes the
# long-polls of every control-plane process (payload: the gateway id).
GATEWAY_CHANNEL = "vpngw_gateway_state"

log = structlog.get_logger("vpngw.commands")

# PostgreSQL's answers that mean "run the whole transaction again": a serialisation
# failure and a detected deadlock. The lock order (tenant row, then peer rows in id
# order; see provisioning.peers) should leave none, so a few tries are plenty.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})
TRANSACTION_ATTEMPTS = 4
# Creates committed together at most (group commit); more waiting form the next group.
PROVISIONING_GROUP = 64


def is_retryable(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


class Commands:
    """Use-cases with their transaction, outbox write and post-commit notifications."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        settings: Settings,
        on_commit: Callable[[], None] = lambda: None,
        gateway_public_key: str | None = None,
    ) -> None:
        self.db = db
        self.gateway_public_key = gateway_public_key
        self.clock = clock
        self.settings = settings
        self._on_commit = on_commit
        self._gateway_public_key = gateway_public_key
        self._on_gateways: Callable[[Sequence[str]], None] = lambda ids: None
        self._provisioning: GroupCommit[tuple[Principal, NewPeer], Peer] = GroupCommit(
            self._provision_group, max_items=PROVISIONING_GROUP
        )
        self.policy = PoolPolicy(
            networks=settings.pool_networks,
            quarantine=timedelta(days=settings.network.address_quarantine_days),
            gateway_id=settings.network.gateway_id,
        )

    def set_on_commit(self, callback: Callable[[], None]) -> None:
        self._on_commit = callback

    def set_on_gateways(self, callback: Callable[[Sequence[str]], None]) -> None:
        """Called after a commit with the gateways whose desired peers it changed."""
        self._on_gateways = callback

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[tuple[AsyncConnection, list[Event]]]:
        events: list[Event] = []
        async with self.db.write() as conn:
            yield conn, events
            touched = await gateways.mark_changed(conn, events)
            if touched and not self.db.is_sqlite:
                # Delivered at commit to every process LISTENing (this one included); one
                # statement for all the gateways touched.
                await conn.execute(
                    text("SELECT pg_notify(:channel, gateway) "
                         "FROM unnest(CAST(:gateways AS text[])) AS gateway"),
                    {"channel": GATEWAY_CHANNEL, "gateways": list(touched)})
            await append_events(conn, events, now=self.clock.now())
        # Long-polls first: an agent's answer is the latency that counts (the sequencer
        # has a second), and on SQLite a sequencing pass holds the loop while it runs.
        if touched:
            self._on_gateways(touched)
        if events:
            self._on_commit()

    async def _run(self, step: Callable[[AsyncConnection], Awaitable[Outcome[T]]]) -> T:
        """Run `step` and commit its events with it; retried whole if PostgreSQL asks to."""
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                async with self._transaction() as (conn, events):
                    outcome = await step(conn)
                    events.extend(outcome.events)
                return outcome.value
            except DBAPIError as exc:
                if attempt == TRANSACTION_ATTEMPTS or not is_retryable(exc):
                    raise
                log.warning("transaction retried", attempt=attempt,
                            sqlstate=getattr(exc.orig, "sqlstate", None))
                await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311
        raise AssertionError("unreachable")

    async def run(self, step: Callable[[AsyncConnection], Awaitable[Outcome[T]]]) -> T:
        """A use-case step from another module (approvals), committed like every other."""
        return await self._run(step)

    async def ensure_pools(self) -> None:
        """The default gateway (this host's settings) and its pools exist and match them."""
        network = self.settings.network
        async with self.db.write() as conn:
            await addresses.ensure_pools(conn, self.settings.pool_networks)
            await gateways.ensure_default_gateway(
                conn, network.gateway_id, endpoint=network.endpoint,
                public_key=self._gateway_public_key,
                listen_port=self.settings.wireguard.listen_port,
                pools=self.settings.pool_networks, now=self.clock.now(),
            )

    # --- gateways (ops) --------------------------------------------------------

    async def register_gateway(
        self, new: NewGateway, egress: dict[str, Any] | None, *, actor: str
    ) -> tuple[Gateway, IssuedToken]:
        """The gateway, its egress mapping logged (before any agent applies it), and the
        agent token bound to it, all in one transaction."""
        gateway_id = ids.new_id()
        async with self._transaction() as (conn, events):
            now = self.clock.now()
            pools = await gateways.choose_pools(conn, new)
            mapping = egress_map(gateway_id, pools, egress) if egress is not None else None
            outcome = await gateways.register_gateway(
                conn, gateway_id, new, pools=pools, egress=egress, now=now, actor=actor
            )
            events.extend(outcome.events)
            if mapping is not None:
                events.extend((await configure_egress(conn, mapping, now=now, actor=actor)).events)
            issued = await tokens.issue_token(
                conn, Role.AGENT, tenant_id=None, label=f"agent {new.name}", actor=actor,
                now=now, gateway_id=gateway_id,
            )
            events.extend(issued.events)
        return outcome.value, issued.value

    async def retire_gateway(self, gateway_id: str, *, reason: str, actor: str) -> Gateway:
        async with self._transaction() as (conn, events):
            now = self.clock.now()
            outcome = await gateways.retire_gateway(
                conn, gateway_id, reason=reason, now=now, actor=actor,
                default_gateway=self.settings.network.gateway_id,
            )
            events.extend(outcome.events)
            events.extend(
                await tokens.revoke_gateway_tokens(conn, gateway_id, actor=actor, now=now)
            )
        return outcome.value

    async def set_tenant_default_gateway(
        self, tenant_id: str, gateway_id: str | None
    ) -> str | None:
        async with self.db.write() as conn:
            return await gateways.set_tenant_default(conn, tenant_id, gateway_id)

    async def issue_agent_token(self, gateway_id: str, *, label: str, actor: str) -> IssuedToken:
        async def step(conn: AsyncConnection) -> Outcome[IssuedToken]:
            gateway = await gateways.get_gateway(conn, gateway_id)
            if gateway.status != "active":
                raise IllegalTransition("a retired gateway cannot be given tokens")
            return await tokens.issue_token(
                conn, Role.AGENT, tenant_id=None, label=label, actor=actor,
                now=self.clock.now(), gateway_id=gateway_id,
            )

        return await self._run(step)

    # --- tenants (ops) ---------------------------------------------------------

    async def create_tenant(self, new: NewTenant, *, actor: str) -> Tenant:
        return await self._run(
            lambda c: tenants.create_tenant(c, new, actor=actor, now=self.clock.now())
        )

    async def verify_tenant(
        self, tenant_id: str, *, evidence_reference: str, actor: str, note: str | None = None
    ) -> Tenant:
        return await self._run(
            lambda c: tenants.transition_tenant(
                c,
                tenant_id,
                Action.VERIFY,
                actor=actor,
                now=self.clock.now(),
                evidence_reference=evidence_reference,
                reason=note,
            )
        )

    async def suspend_tenant(self, tenant_id: str, *, reason: str, actor: str) -> Tenant:
        return await self._run(
            lambda c: tenants.transition_tenant(
                c, tenant_id, Action.SUSPEND, actor=actor, now=self.clock.now(), reason=reason
            )
        )

    async def reinstate_tenant(self, tenant_id: str, *, reason: str, actor: str) -> Tenant:
        return await self._run(
            lambda c: tenants.transition_tenant(
                c, tenant_id, Action.REINSTATE, actor=actor, now=self.clock.now(), reason=reason
            )
        )

    async def terminate_tenant(self, tenant_id: str, *, reason: str, actor: str) -> Tenant:
        """Final: the tenant's peers are revoked, their addresses released, tokens revoked."""

        async def step(conn: AsyncConnection) -> Outcome[Tenant]:
            now = self.clock.now()
            outcome = await tenants.transition_tenant(
                conn, tenant_id, Action.TERMINATE, actor=actor, now=now, reason=reason
            )
            revoked = await peers.revoke_tenant_peers(
                conn, tenant_id, now=now, actor=actor, reason="tenant terminated"
            )
            untokened = await tokens.revoke_tenant_tokens(conn, tenant_id, actor=actor, now=now)
            return Outcome(outcome.value, (*outcome.events, *revoked, *untokened))

        return await self._run(step)

    # --- tokens (ops) ----------------------------------------------------------

    async def issue_ops_token(self, *, label: str, actor: str) -> IssuedToken:
        return await self._run(
            lambda c: tokens.issue_token(
                c, Role.OPS, tenant_id=None, label=label, actor=actor, now=self.clock.now()
            )
        )

    async def issue_tenant_token(self, tenant_id: str, *, label: str, actor: str) -> IssuedToken:
        async def step(conn: AsyncConnection) -> Outcome[IssuedToken]:
            # Locked, so a termination committing meanwhile cannot miss this token.
            tenant = await tenants.get_tenant(conn, tenant_id, lock=True)
            if tenant.status is tenants.TenantStatus.TERMINATED:
                raise IllegalTransition(
                    "a terminated tenant cannot be given tokens", tenant_status=tenant.status.value
                )
            return await tokens.issue_token(
                conn,
                Role.TENANT,
                tenant_id=tenant_id,
                label=label,
                actor=actor,
                now=self.clock.now(),
            )

        return await self._run(step)

    async def revoke_token(
        self, token_id: str, *, actor: str, tenant_id: str | None = None
    ) -> TokenInfo:
        return await self._run(
            lambda c: tokens.revoke_token(
                c, token_id, actor=actor, now=self.clock.now(), tenant_id=tenant_id
            )
        )

    # --- peers (tenant) --------------------------------------------------------

    def _refuse_gateway_key(self, public_key: str | None) -> None:
        if public_key is not None and self.gateway_public_key is not None:
            keys.refuse_gateway_key(public_key, self.gateway_public_key)

    async def provision_peer(self, who: Principal, new: NewPeer) -> Peer:
        """Committed together with the other creates that arrive at the same moment."""
        assert who.tenant_id is not None
        self._refuse_gateway_key(new.public_key)
        return await self._provisioning.submit((who, new))

    async def _provision_group(
        self, group: Sequence[tuple[Principal, NewPeer]]
    ) -> list[Peer | DomainError]:
        # A create alone takes this path too: its pre-built statements on the driver cost
        # less than the one-by-one path's SQLAlchemy statements, savepoint included.
        async def step(conn: AsyncConnection) -> Outcome[list[Peer | DomainError]]:
            gateways_for: dict[tuple[str, str | None], Gateway | DomainError] = {}
            requests: list[peers.ProvisionRequest | DomainError] = []
            for who, new in group:
                try:
                    requests.append(await self._provision_request(conn, who, new, gateways_for))
                except DomainError as refused:
                    requests.append(refused)
            results = await peers.provision_peers(conn, requests, now=self.clock.now())
            return Outcome(
                [r.value if isinstance(r, Outcome) else r for r in results],
                tuple(e for r in results if isinstance(r, Outcome) for e in r.events),
            )

        return await self._run(step)

    async def _provision_request(
        self, conn: AsyncConnection, who: Principal, new: NewPeer,
        gateways_for: dict[tuple[str, str | None], Gateway | DomainError],
    ) -> peers.ProvisionRequest:
        """The gateway asked for, else the one with the most free addresses (chosen once
        per group for each tenant and wish)."""
        tenant_id = who.tenant_id or ""
        wish = (tenant_id, new.gateway_id)
        if wish not in gateways_for:
            try:
                gateways_for[wish] = await gateways.pick_gateway(
                    conn, new.gateway_id, tenant_id=tenant_id)
            except DomainError as refused:
                gateways_for[wish] = refused
        gateway = gateways_for[wish]
        if isinstance(gateway, DomainError):
            raise gateway
        if new.public_key is not None and gateway.public_key is not None:
            keys.refuse_gateway_key(new.public_key, gateway.public_key)
        policy = PoolPolicy(
            networks=gateway.pools, quarantine=self.policy.quarantine, gateway_id=gateway.id
        )
        return peers.ProvisionRequest(tenant_id, new, policy, who.actor)

    async def _provision(
        self, conn: AsyncConnection, who: Principal, new: NewPeer
    ) -> Outcome[Peer]:
        """On the gateway asked for, else the one with the most free addresses."""
        gateway = await gateways.pick_gateway(conn, new.gateway_id, tenant_id=who.tenant_id)
        if new.public_key is not None and gateway.public_key is not None:
            keys.refuse_gateway_key(new.public_key, gateway.public_key)
        policy = PoolPolicy(
            networks=gateway.pools, quarantine=self.policy.quarantine, gateway_id=gateway.id
        )
        return await peers.provision_peer(
            conn, who.tenant_id or "", new, policy=policy, now=self.clock.now(), actor=who.actor
        )

    async def revoke_peer(self, who: Principal, peer_id: str) -> Peer:
        return await self._run(
            lambda c: peers.revoke_peer(
                c, who.tenant_id, peer_id, now=self.clock.now(), actor=who.actor
            )
        )

    async def rotate_peer(self, who: Principal, peer_id: str, public_key: str | None) -> Peer:
        self._refuse_gateway_key(public_key)
        return await self._run(
            lambda c: peers.rotate_peer_key(
                c,
                who.tenant_id or "",
                peer_id,
                public_key=public_key,
                now=self.clock.now(),
                actor=who.actor,
            )
        )

    async def expire_due_peers(self) -> int:
        async def step(conn: AsyncConnection) -> Outcome[int]:
            events = await peers.expire_due_peers(conn, now=self.clock.now())
            await links.drop_expired_seals(conn, now=self.clock.now())
            return Outcome(len(events), events)

        return await self._run(step)

    async def create_link(self, who: Principal, peer_id: str, ttl: timedelta) -> links.ConfigLink:
        async with self.db.write() as conn:
            return await links.create_link(
                conn, who.tenant_id or "", peer_id, ttl=ttl, now=self.clock.now()
            )

    async def provision_peer_with_link(
        self, who: Principal, new: NewPeer, ttl: timedelta, render: RenderConfig
    ) -> tuple[Peer, links.ConfigLink]:
        """A peer and its one-time link in one transaction. A server-generated key is
        sealed into the link (`render` gives the full config) and returned nowhere else."""

        async def step(conn: AsyncConnection) -> Outcome[tuple[Peer, links.ConfigLink]]:
            created = await self._provision(conn, who, new)
            return await self._link_for(conn, who, created, ttl, render)

        return await self._run(step)

    async def rotate_peer_with_link(
        self, who: Principal, peer_id: str, ttl: timedelta, render: RenderConfig
    ) -> tuple[Peer, links.ConfigLink]:
        """A server-generated rotation whose new config travels only in a sealed link."""

        async def step(conn: AsyncConnection) -> Outcome[tuple[Peer, links.ConfigLink]]:
            rotated = await peers.rotate_peer_key(
                conn, who.tenant_id or "", peer_id, public_key=None, now=self.clock.now(),
                actor=who.actor,
            )
            return await self._link_for(conn, who, rotated, ttl, render)

        return await self._run(step)

    async def _link_for(
        self, conn: AsyncConnection, who: Principal, outcome: Outcome[Peer], ttl: timedelta,
        render: RenderConfig,
    ) -> Outcome[tuple[Peer, links.ConfigLink]]:
        peer = outcome.value
        sealed = None
        if peer.private_key:
            psk = await peers.get_preshared_key(conn, who.tenant_id or "", peer.id)
            sealed = render(peer, psk)
        link = await links.create_link(
            conn, who.tenant_id or "", peer.id, ttl=ttl, now=self.clock.now(),
            config_to_seal=sealed,
        )
        return Outcome((peer, link), outcome.events)

    async def redeem_link(self, token: str) -> links.Redeemed:
        async with self.db.write() as conn:
            return await links.redeem_link(conn, token, now=self.clock.now())

    async def add_regulator_key(
        self, *, keyid: str, public_key: str, label: str, actor: str
    ) -> RegulatorKey:
        return await self._run(
            lambda c: registry.add_key(
                c,
                keyid=keyid,
                public_key=public_key,
                label=label,
                actor=actor,
                now=self.clock.now(),
            )
        )

    async def revoke_regulator_key(self, keyid: str, *, actor: str) -> RegulatorKey:
        return await self._run(
            lambda c: registry.revoke_key(c, keyid, actor=actor, now=self.clock.now())
        )

    async def configure_egress(self, egress: EgressMap, *, actor: str) -> bool:
        """Log the egress mapping if it changed; True when an event was appended."""
        try:
            return await self._run(
                lambda c: configure_egress(c, egress, now=self.clock.now(), actor=actor)
            )
        except IntegrityError:
            # Another process sharing the database logged it first; compare with theirs.
            return await self._run(
                lambda c: configure_egress(c, egress, now=self.clock.now(), actor=actor)
            )

    async def record_observations(
        self, gateway_id: str, batch_id: str, observed: Sequence[SessionEvent]
    ) -> bool:
        """Write an agent's batch into the outbox exactly once; False if it came before.

        All or nothing: one event about a peer of another gateway (403) or an unknown key
        (422) refuses the whole batch, and nothing of it is written.
        """
        try:
            async with self._transaction() as (conn, events):
                seen = await conn.scalar(select(agent_batches.c.batch_id).where(
                    agent_batches.c.gateway_id == gateway_id,
                    agent_batches.c.batch_id == batch_id))
                if seen is not None:
                    return False
                owners = await key_owners(conn, {e.public_key for e in observed})
                times: dict[datetime, str] = {}  # a batch's events share few times
                for index, e in enumerate(observed):
                    owner = owners.get(e.public_key)
                    if owner is None:
                        raise UnknownPeer(
                            f"events[{index}].public_key is no peer's key; the batch was "
                            "refused as a whole", field=f"events[{index}].public_key")
                    if owner.gateway_id != gateway_id:
                        raise EventNotAllowed(
                            f"events[{index}] is about a peer of another gateway; an agent "
                            "reports only its own gateway's peers",
                            field=f"events[{index}].public_key")
                    at = times.get(e.at)
                    if at is None:
                        at = times[e.at] = format_time(e.at)
                    events.append(session_event(e, peer_id=owner.peer_id,
                                                tenant_id=owner.tenant_id,
                                                gateway_id=gateway_id, observed_at=at))
                await conn.execute(insert(agent_batches).values(
                    gateway_id=gateway_id, batch_id=batch_id, events=len(observed),
                    received_at=self.clock.now()))
                await gateways.record_contact(conn, gateway_id, now=self.clock.now())
        except IntegrityError:
            return False  # the same batch, committed by a concurrent retry
        return True

    async def record_status(
        self, gateway_id: str, *, public_key: str | None, listen_port: int | None,
        ok: bool | None, detail: str | None, statuses: Sequence[PeerStatus],
    ) -> None:
        """An agent's interface report: its key and health, and its peers' latest status."""
        async with self.db.write() as conn:
            owners = await key_owners(conn, {s.public_key for s in statuses})
            foreign = [s for s in statuses if s.public_key in owners
                       and owners[s.public_key].gateway_id != gateway_id]
            if foreign:
                raise EventNotAllowed(
                    "peers: the status of a peer of another gateway was sent; an agent "
                    "reports only its own gateway's peers", field="peers")
            now = self.clock.now()
            await gateways.record_contact(conn, gateway_id, now=now, public_key=public_key,
                                          listen_port=listen_port, ok=ok, detail=detail)
            await write_peer_status(conn, [
                status_row(owners[s.public_key].peer_id, s, now)
                for s in statuses if s.public_key in owners
            ])

    async def record(self, events: list[Event]) -> None:
        """Append events that come with no state change of their own (e.g. sessions)."""
        async with self._transaction() as (_conn, pending):
            pending.extend(events)
