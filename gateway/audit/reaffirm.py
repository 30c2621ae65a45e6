"""Facts still in force, restated as fresh events before retention erases their old record.

Retention erases every entry older than the retention period, but some of those entries
state facts that still hold: a peer provisioned two years ago still holds its tunnel
addresses, a tenant onboarded then is still the same company. Without a fresh record,
"who holds 10.100.0.7 now" would have no readable answer. So before each erasure every
fact provider returns one event per fact that is still in force and whose newest
restatement is older than the cut-off; the events are logged (and sequenced) first, and
only then is anything erased.

A provider is one async function per kind of fact: ``(conn, before) -> events``. The
default list covers tenants and peers (with their addresses and current key); another
part of the gateway adds its own kind by passing a longer list to ``redact_expired``
(e.g. regulator keys in force, or egress settings: one ``egress.reaffirmed`` per gateway).
A provider must be idempotent over the cut-off: once its event for a fact is in the log
with ``ts >= before``, it returns nothing more for that fact.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.canonical import format_time
from gateway.audit.schema import log_entries
from provisioning.events import Event
from provisioning.schema import addresses, peers, tenant_transitions, tenants

FactProvider = Callable[[AsyncConnection, datetime], Awaitable[list[Event]]]

PEER_REAFFIRMED = "peer.reaffirmed"
TENANT_REAFFIRMED = "tenant.reaffirmed"
REGULATOR_KEY_REAFFIRMED = "regulator.key_reaffirmed"
REASON = "retention"


def _restated_since(event_type: str, column: str, before: datetime) -> Select[Any]:
    """Ids (in `column` of the log) that already have a fresh `event_type` record."""
    return select(log_entries.c[column]).where(
        log_entries.c.type == event_type,
        log_entries.c.ts >= before,
        log_entries.c[column].is_not(None),
    )


async def tenants_in_force(conn: AsyncConnection, before: datetime) -> list[Event]:
    """Every tenant not terminated: who it is, its status, what it was verified on."""
    rows = (await conn.execute(
        select(tenants).where(
            tenants.c.status != "terminated",
            tenants.c.created_at < before,
            tenants.c.id.not_in(_restated_since(TENANT_REAFFIRMED, "tenant_id", before)),
        ).order_by(tenants.c.id)
    )).all()
    evidence = await _latest_evidence(conn, [r.id for r in rows])
    events = []
    for r in rows:
        attrs: dict[str, str | int | tuple[str, ...]] = {
            "tenant_id": r.id, "legal_name": r.legal_name,
            "registration_number": r.registration_number, "country": r.country,
            "status": r.status, "created_at": format_time(r.created_at), "reason": REASON,
        }
        if r.id in evidence:
            attrs["evidence_reference"] = evidence[r.id]
        events.append(Event(TENANT_REAFFIRMED, attrs))
    return events


async def _latest_evidence(conn: AsyncConnection, tenant_ids: Sequence[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(tenant_ids), 500):
        rows = await conn.execute(
            select(tenant_transitions.c.tenant_id, tenant_transitions.c.evidence_reference)
            .where(tenant_transitions.c.tenant_id.in_(tenant_ids[start:start + 500]),
                   tenant_transitions.c.evidence_reference.is_not(None))
            .order_by(tenant_transitions.c.id)
        )
        found.update({r.tenant_id: r.evidence_reference for r in rows})  # the newest wins
    return found


def peers_in_force(gateway_id: str) -> FactProvider:
    """Every active peer: which tenant, which key now, which tunnel addresses since when
    (`gateway_id`: the default gateway's, for peers that name none)."""

    async def provide(conn: AsyncConnection, before: datetime) -> list[Event]:
        rows = (await conn.execute(
            select(peers.c.id, peers.c.tenant_id, peers.c.public_key, peers.c.created_at,
                   peers.c.gateway_id)
            .where(
                peers.c.status == "active",
                peers.c.created_at < before,
                peers.c.id.not_in(_restated_since(PEER_REAFFIRMED, "peer_id", before)),
            ).order_by(peers.c.id)
        )).all()
        held: dict[str, list[str]] = {}
        ids = [r.id for r in rows]
        for start in range(0, len(ids), 500):
            for a in await conn.execute(
                select(addresses.c.peer_id, addresses.c.address)
                .where(addresses.c.peer_id.in_(ids[start:start + 500]))
                .order_by(addresses.c.pool)
            ):
                held.setdefault(a.peer_id, []).append(a.address)
        return [
            Event(PEER_REAFFIRMED, {
                "peer_id": r.id, "tenant_id": r.tenant_id, "public_key": r.public_key,
                "tunnel_ips": tuple(held.get(r.id, ())),
                # NULL: a peer from before gateways existed, carried by the default one.
                "gateway_id": r.gateway_id or gateway_id,
                # Addresses are given at provisioning and kept for the peer's whole life.
                "held_since": format_time(r.created_at), "reason": REASON,
            })
            for r in rows
        ]

    return provide


def default_providers(gateway_id: str) -> tuple[FactProvider, ...]:
    """Tenants and peers; the regulator's keys and egress mappings come from their owners
    (gateway.regulator.registry.keys_in_force, gateway.egress.store.egress_in_force)."""
    return (tenants_in_force, peers_in_force(gateway_id))


async def facts_in_force(
    conn: AsyncConnection, providers: Sequence[FactProvider], *, before: datetime
) -> list[Event]:
    events: list[Event] = []
    for provide in providers:
        events.extend(await provide(conn, before))
    return events
