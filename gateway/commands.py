"""Every state change, run in one transaction with its audit events; shared by HTTP and CLI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.outbox import append_events
from gateway.clock import Clock
from gateway.db import Database
from gateway.egress.mapping import EgressMap
from gateway.egress.store import configure_egress
from gateway.regulator import registry
from gateway.regulator.registry import RegulatorKey
from gateway.settings import Settings
from provisioning import addresses, keys, links, peers, tenants, tokens
from provisioning.errors import IllegalTransition
from provisioning.events import Event, Outcome
from provisioning.peers import NewPeer, Peer, PoolPolicy
from provisioning.tenants import Action, NewTenant, Tenant
from provisioning.tokens import IssuedToken, Principal, Role, TokenInfo

T = TypeVar("T")
# (peer with its server-generated private key, preshared key) → the wg-quick config text
RenderConfig = Callable[[Peer, str | None], str]


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
        self.policy = PoolPolicy(
            networks=settings.pool_networks,
            quarantine=timedelta(days=settings.network.address_quarantine_days),
            gateway_id=settings.network.gateway_id,
        )

    def set_on_commit(self, callback: Callable[[], None]) -> None:
        self._on_commit = callback

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[tuple[AsyncConnection, list[Event]]]:
        events: list[Event] = []
        async with self.db.write() as conn:
            yield conn, events
            await append_events(conn, events, now=self.clock.now())
        if events:
            self._on_commit()

    async def _run(self, step: Callable[[AsyncConnection], Awaitable[Outcome[T]]]) -> T:
        async with self._transaction() as (conn, events):
            outcome = await step(conn)
            events.extend(outcome.events)
        return outcome.value

    async def ensure_pools(self) -> None:
        async with self.db.write() as conn:
            await addresses.ensure_pools(conn, self.settings.pool_networks)

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
        async with self._transaction() as (conn, events):
            now = self.clock.now()
            outcome = await tenants.transition_tenant(
                conn, tenant_id, Action.TERMINATE, actor=actor, now=now, reason=reason
            )
            events.extend(outcome.events)
            events.extend(
                await peers.revoke_tenant_peers(
                    conn, tenant_id, now=now, actor=actor, reason="tenant terminated"
                )
            )
            events.extend(await tokens.revoke_tenant_tokens(conn, tenant_id, actor=actor, now=now))
        return outcome.value

    # --- tokens (ops) ----------------------------------------------------------

    async def issue_ops_token(self, *, label: str, actor: str) -> IssuedToken:
        return await self._run(
            lambda c: tokens.issue_token(
                c, Role.OPS, tenant_id=None, label=label, actor=actor, now=self.clock.now()
            )
        )

    async def issue_tenant_token(self, tenant_id: str, *, label: str, actor: str) -> IssuedToken:
        async def step(conn: AsyncConnection) -> Outcome[IssuedToken]:
            tenant = await tenants.get_tenant(conn, tenant_id)
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
        assert who.tenant_id is not None
        self._refuse_gateway_key(new.public_key)
        return await self._run(
            lambda c: peers.provision_peer(
                c,
                who.tenant_id or "",
                new,
                policy=self.policy,
                now=self.clock.now(),
                actor=who.actor,
            )
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
        async with self._transaction() as (conn, events):
            events.extend(await peers.expire_due_peers(conn, now=self.clock.now()))
            await links.drop_expired_seals(conn, now=self.clock.now())
        return len(events)

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
            created = await peers.provision_peer(
                conn, who.tenant_id or "", new, policy=self.policy, now=self.clock.now(),
                actor=who.actor,
            )
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

    async def record(self, events: list[Event]) -> None:
        """Append events that come with no state change of their own (e.g. sessions)."""
        async with self._transaction() as (_conn, pending):
            pending.extend(events)
