"""Ops view of the audit log (/ops/v1/audit) for the provider's compliance staff."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web
from sqlalchemy import select

from gateway.audit import storage
from gateway.audit.schema import log_entries
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.params import Identifier, Time, WholeNumber
from gateway.http.routes import Route, json_reply, ref
from provisioning import ids, validation
from provisioning.tokens import Role


def _entry_view(row: Any, event: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "index": int(row.idx),
        "type": row.type,
        "ts": validation.rfc3339(row.ts),
        "tenant_id": row.tenant_id,
        "peer_id": row.peer_id,
        "leaf_hash": base64.b64encode(bytes(row.leaf_hash)).decode(),
        "redacted": event is None,
        "event": event,
    }


EVENT_TYPE = validation.IdFormat(
    "event type", "^[a-z][a-z_]*(?:[.][a-z][a-z_]*)+$", 40, "peer.provisioned"
)
TYPE = Identifier("type", EVENT_TYPE, description="Only entries of this event type")
TENANT = Identifier("tenant", ids.UUID, description="Only entries about this tenant")
SINCE = Time("since", description="Only entries at or after this time")
UNTIL = Time("until", description="Only entries before this time")
LIMIT = WholeNumber(
    "limit", minimum=1, maximum=1000, default=100, description="Page size (at most 1000)"
)
AFTER = WholeNumber(
    "after",
    minimum=0,
    maximum=2**62,
    description="The `next` value of the previous page: entries after this index",
)


async def list_audit(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    limit = LIMIT.value(request)
    after = AFTER.optional(request)
    query = select(log_entries).order_by(log_entries.c.idx).limit(limit)
    if after is not None:
        query = query.where(log_entries.c.idx > after)
    if (event_type := TYPE.optional(request)) is not None:
        query = query.where(log_entries.c.type == event_type)
    if (tenant_id := TENANT.optional(request)) is not None:
        query = query.where(log_entries.c.tenant_id == tenant_id)
    if (since := SINCE.optional(request)) is not None:
        query = query.where(log_entries.c.ts >= since)
    if (until := UNTIL.optional(request)) is not None:
        query = query.where(log_entries.c.ts < until)
    async with request.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(query)).all()
        opener = storage.Opener.of(conn)
    items = [_entry_view(r, opener.event(r.leaf, r.leaf_hash)) for r in rows]
    return web.json_response(
        {"items": items, "next": items[-1]["index"] if len(items) == limit else None}
    )


ROUTES = [
    Route(
        "GET",
        "/ops/v1/audit",
        list_audit,
        "Audit log entries for compliance staff",
        "ops",
        params=(TYPE, TENANT, SINCE, UNTIL, LIMIT, AFTER),
        replies=(json_reply(200, "A page of log entries, oldest first", ref("AuditPage")),),
    ),
]
