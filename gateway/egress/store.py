"""The egress settings last logged per gateway, and the use-case that logs a change."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.canonical import format_time
from gateway.audit.schema import log_entries
from gateway.egress.mapping import EgressMap
from provisioning.events import Event, Outcome
from provisioning.schema import egress_configs, gateways


async def configure_egress(
    conn: AsyncConnection, egress: EgressMap, *, now: datetime, actor: str
) -> Outcome[bool]:
    """Log `egress.configured` when the mapping differs from the one last logged.

    Runs before the settings take effect, so the log always holds the mapping in force.
    The value says whether anything changed.
    """
    fields = egress.event_fields()
    text = json.dumps(fields, sort_keys=True)
    row = (
        await conn.execute(
            select(egress_configs.c.fields).where(egress_configs.c.gateway_id == egress.gateway_id)
        )
    ).first()
    if row is not None and row.fields == text:
        return Outcome(False, ())
    values = {"fields": text, "configured_at": now}
    if row is None:
        await conn.execute(insert(egress_configs).values(gateway_id=egress.gateway_id, **values))
    else:
        await conn.execute(
            update(egress_configs)
            .where(egress_configs.c.gateway_id == egress.gateway_id)
            .values(**values)
        )
    return Outcome(True, (Event("egress.configured", {**fields, "actor": actor}),))


async def logged_maps(conn: AsyncConnection, gateway_ids: Iterable[str]) -> dict[str, EgressMap]:
    """The egress mapping last logged for each of these gateways (those that have one)."""
    wanted = sorted(set(gateway_ids))
    if not wanted:
        return {}
    rows = (
        await conn.execute(
            select(egress_configs.c.gateway_id, egress_configs.c.fields).where(
                egress_configs.c.gateway_id.in_(wanted)
            )
        )
    ).all()
    return {r.gateway_id: EgressMap.from_event(json.loads(r.fields)) for r in rows}


EGRESS_REAFFIRMED = "egress.reaffirmed"


async def egress_in_force(conn: AsyncConnection, before: datetime) -> list[Event]:
    """Fact provider for retention (gateway.audit.reaffirm): each gateway's mapping in force.

    An `egress.reaffirmed` carries the same fields as the `egress.configured` it restates,
    plus `configured_at` (since when the mapping holds), so attribution.egress still
    answers for any moment since then after the original event is erased.

    A retired gateway's mapping is no longer in force, but it attributed traffic up to
    the retirement: it is restated while the retirement is younger than the cut-off (the
    records of peers it carried can still be retained and asked about), and no more
    once every moment it held is past the cut-off, like any other erased fact.
    """
    restated = set()
    opener = storage.Opener.of(conn)
    for leaf, leaf_hash in await conn.execute(
        select(log_entries.c.leaf, log_entries.c.leaf_hash).where(
            log_entries.c.type == EGRESS_REAFFIRMED, log_entries.c.ts >= before,
            log_entries.c.leaf.is_not(None),
        )
    ):
        event = opener.event(leaf, leaf_hash)
        if event is not None:
            restated.add(event["gateway_id"])
    retired_long_ago = select(gateways.c.id).where(
        gateways.c.status == "retired", gateways.c.retired_at < before
    )
    rows = (await conn.execute(
        select(egress_configs).where(
            egress_configs.c.configured_at < before,
            egress_configs.c.gateway_id.not_in(retired_long_ago),
        ).order_by(egress_configs.c.gateway_id)
    )).all()
    return [
        Event(EGRESS_REAFFIRMED, {
            **json.loads(r.fields), "configured_at": format_time(r.configured_at),
            "reason": "retention",
        })
        for r in rows if r.gateway_id not in restated
    ]
