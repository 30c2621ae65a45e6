"""Ops view of the audit log (/ops/v1/audit) for the provider's compliance staff."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web
from sqlalchemy import select

from gateway.audit.schema import log_entries
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import query_int
from gateway.http.problems import bad_request
from gateway.http.routes import INT, STR, TIME, Route
from provisioning import ids, validation
from provisioning.errors import InvalidInput
from provisioning.tokens import Role


def _entry_view(row: Any) -> dict[str, Any]:
    return {
        "index": int(row.idx),
        "type": row.type,
        "ts": validation.rfc3339(row.ts),
        "tenant_id": row.tenant_id,
        "peer_id": row.peer_id,
        "leaf_hash": base64.b64encode(bytes(row.leaf_hash)).decode(),
        "redacted": row.leaf is None,
        "event": None if row.leaf is None else json.loads(bytes(row.leaf)),
    }


async def list_audit(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    limit = query_int(request, "limit", default=100, minimum=1, maximum=1000)
    after = query_int(request, "after", default=-1, minimum=0, maximum=2**62)
    query = (
        select(log_entries)
        .where(log_entries.c.idx > after)
        .order_by(log_entries.c.idx)
        .limit(limit)
    )
    q = request.query
    if "type" in q:
        if not q["type"] or len(q["type"]) > 40:
            raise bad_request("type must be an event type such as peer.provisioned", field="type")
        query = query.where(log_entries.c.type == q["type"])
    if "tenant" in q:
        if not ids.is_id(q["tenant"]):
            raise bad_request("tenant must be a tenant id", field="tenant")
        query = query.where(log_entries.c.tenant_id == q["tenant"])
    try:
        if "since" in q:
            query = query.where(log_entries.c.ts >= validation.timestamp("since", q["since"]))
        if "until" in q:
            query = query.where(log_entries.c.ts < validation.timestamp("until", q["until"]))
    except InvalidInput as error:
        raise bad_request(error.detail, field=error.field) from error
    async with request.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(query)).all()
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
        query={
            "type": STR,
            "tenant": STR,
            "since": TIME,
            "until": TIME,
            "limit": INT,
            "after": INT,
        },
    ),
]
