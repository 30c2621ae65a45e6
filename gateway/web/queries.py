"""Reads the pages need beyond the provisioning use-cases (live peer status, audit entries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.schema import log_entries
from provisioning.schema import peer_status, peers
from provisioning.validation import rfc3339


def _status_doc(row: Any | None) -> dict[str, Any]:
    if row is None:
        return {"connected": False, "latest_handshake": None, "endpoint": None,
                "rx_bytes": 0, "tx_bytes": 0}
    return {
        "connected": bool(row.connected),
        "latest_handshake": rfc3339(row.latest_handshake) if row.latest_handshake else None,
        "endpoint": row.endpoint,
        "rx_bytes": int(row.rx_bytes),
        "tx_bytes": int(row.tx_bytes),
    }


async def peer_statuses(
    conn: AsyncConnection, tenant_id: str, peer_ids: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Latest observed WireGuard state of a tenant's active peers (or the ones named)."""
    query = (
        select(peers.c.id, peer_status)
        .select_from(peers.outerjoin(peer_status, peer_status.c.peer_id == peers.c.id))
        .where(peers.c.tenant_id == tenant_id)
    )
    if peer_ids is None:
        query = query.where(peers.c.status == "active")
    else:
        query = query.where(peers.c.id.in_(list(peer_ids)))
    rows = (await conn.execute(query)).all()
    return {r.id: _status_doc(r if r.peer_id is not None else None) for r in rows}


@dataclass(frozen=True)
class AuditRow:
    index: int
    type: str
    ts: datetime
    tenant_id: str | None
    peer_id: str | None
    leaf_hash: bytes
    event: dict[str, Any] | None


async def audit_entries(
    conn: AsyncConnection,
    *,
    limit: int,
    before: int | None = None,
    event_type: str | None = None,
    tenant_id: str | None = None,
) -> list[AuditRow]:
    """Newest first, optionally filtered; `before` pages back through older entries."""
    query = select(log_entries).order_by(log_entries.c.idx.desc()).limit(limit)
    if before is not None:
        query = query.where(log_entries.c.idx < before)
    if event_type:
        query = query.where(log_entries.c.type == event_type)
    if tenant_id:
        query = query.where(log_entries.c.tenant_id == tenant_id)
    rows = (await conn.execute(query)).all()
    opener = storage.Opener.of(conn)
    return [
        AuditRow(int(r.idx), r.type, r.ts, r.tenant_id, r.peer_id, bytes(r.leaf_hash),
                 opener.event(r.leaf, r.leaf_hash))
        for r in rows
    ]
