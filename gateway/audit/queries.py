"""The log as people browse it (ops API, console): filtered pages of entries, read-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.schema import log_entries
from provisioning.validation import IdFormat

EVENT_TYPE = IdFormat("event type", "^[a-z][a-z_]*(?:[.][a-z][a-z_]*)+$", 40, "peer.provisioned")


@dataclass(frozen=True)
class EntryRow:
    index: int
    type: str
    ts: datetime
    tenant_id: str | None
    peer_id: str | None
    leaf_hash: bytes
    leaf: bytes | None  # the opened payload; None once retention has erased it

    @property
    def event(self) -> dict[str, Any] | None:
        return None if self.leaf is None else json.loads(self.leaf)


async def list_entries(
    conn: AsyncConnection,
    *,
    limit: int,
    newest_first: bool = False,
    after: int | None = None,
    before: int | None = None,
    event_type: str | None = None,
    tenant_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[EntryRow]:
    """One page in log order (or newest first); `after`/`before` page by index, times by `ts`."""
    order = log_entries.c.idx.desc() if newest_first else log_entries.c.idx
    query = select(log_entries).order_by(order).limit(limit)
    if after is not None:
        query = query.where(log_entries.c.idx > after)
    if before is not None:
        query = query.where(log_entries.c.idx < before)
    if event_type:
        query = query.where(log_entries.c.type == event_type)
    if tenant_id:
        query = query.where(log_entries.c.tenant_id == tenant_id)
    if since is not None:
        query = query.where(log_entries.c.ts >= since)
    if until is not None:
        query = query.where(log_entries.c.ts < until)
    rows = (await conn.execute(query)).all()
    opener = storage.Opener.of(conn)  # payloads are sealed at rest; None once erased
    return [
        EntryRow(
            int(r.idx), r.type, r.ts, r.tenant_id, r.peer_id, bytes(r.leaf_hash),
            opener.leaf(r.leaf, r.leaf_hash),
        )
        for r in rows
    ]
