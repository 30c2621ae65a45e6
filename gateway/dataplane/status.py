"""Reads of the collector's `peer_status` table for APIs and pages (the data plane writes it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning.schema import peer_status, peers
from provisioning.validation import rfc3339

# A peer the collector has not seen yet.
NEVER_SEEN: dict[str, Any] = {
    "connected": False,
    "latest_handshake": None,
    "endpoint": None,
    "rx_bytes": 0,
    "tx_bytes": 0,
}


def _status_doc(row: Any | None) -> dict[str, Any]:
    if row is None:
        return dict(NEVER_SEEN)
    return {
        "connected": bool(row.connected),
        "latest_handshake": rfc3339(row.latest_handshake) if row.latest_handshake else None,
        "endpoint": row.endpoint,
        "rx_bytes": int(row.rx_bytes),
        "tx_bytes": int(row.tx_bytes),
    }


async def peer_connection(conn: AsyncConnection, peer_id: str) -> dict[str, Any]:
    """The latest observed WireGuard state of one peer."""
    row = (await conn.execute(select(peer_status).where(peer_status.c.peer_id == peer_id))).first()
    return _status_doc(row)


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


async def count_connected(conn: AsyncConnection, gateway_id: str) -> int:
    """Peers of one gateway the collector last saw connected."""
    live = await conn.scalar(
        select(func.count())
        .select_from(peer_status.join(peers, peers.c.id == peer_status.c.peer_id))
        .where(peers.c.gateway_id == gateway_id, peer_status.c.connected == 1)
    )
    return int(live or 0)
