"""Ops view of the audit log (/ops/v1/audit) for the provider's compliance staff."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from gateway.audit.queries import EVENT_TYPE, EntryRow, list_entries
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.params import Identifier, Time, WholeNumber
from gateway.http.routes import Route, json_reply, ref
from provisioning import ids, validation
from provisioning.tokens import Role


def _entry_view(row: EntryRow) -> dict[str, Any]:
    return {
        "index": row.index,
        "type": row.type,
        "ts": validation.rfc3339(row.ts),
        "tenant_id": row.tenant_id,
        "peer_id": row.peer_id,
        "leaf_hash": base64.b64encode(row.leaf_hash).decode(),
        "redacted": row.leaf is None,
        "event": row.event,
    }


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
    async with request.app[appkeys.DATABASE].read() as conn:
        rows = await list_entries(
            conn,
            limit=limit,
            after=AFTER.optional(request),
            event_type=TYPE.optional(request),
            tenant_id=TENANT.optional(request),
            since=SINCE.optional(request),
            until=UNTIL.optional(request),
        )
    items = [_entry_view(r) for r in rows]
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
