"""The egress settings last logged per gateway, and the use-case that logs a change."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.egress.mapping import EgressMap
from provisioning.events import Event, Outcome
from provisioning.schema import egress_configs


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
