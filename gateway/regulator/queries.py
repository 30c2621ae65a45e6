"""Regulator queries answered from the derived tables and the log's indexed columns."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.schema import address_intervals, endpoint_intervals, log_entries
from gateway.regulator.request import Query


async def _subject_entries(
    conn: AsyncConnection, peer_ids: set[str], tenant_ids: set[str]
) -> set[int]:
    """The entries that say who a peer belongs to: its provisioning and its tenant's creation."""
    if not peer_ids and not tenant_ids:
        return set()
    conds = []
    if peer_ids:
        conds.append(
            and_(
                log_entries.c.type == "peer.provisioned",
                log_entries.c.peer_id.in_(sorted(peer_ids)),
            )
        )
    if tenant_ids:
        conds.append(
            and_(
                log_entries.c.type == "tenant.created",
                log_entries.c.tenant_id.in_(sorted(tenant_ids)),
            )
        )
    rows = await conn.execute(
        select(log_entries.c.idx).where(or_(*conds), log_entries.c.leaf.is_not(None))
    )
    return {int(r.idx) for r in rows}


async def find_entries(conn: AsyncConnection, query: Query, *, limit: int) -> list[int]:
    """Log indexes answering the query, oldest first, at most `limit` of them."""
    if query.kind == "attribution.tunnel_ip":
        t = address_intervals
        rows = (
            await conn.execute(
                select(t)
                .where(
                    t.c.address == query.ip,
                    t.c.start_ts <= query.at,
                    or_(t.c.end_ts.is_(None), t.c.end_ts > query.at),
                )
                .order_by(t.c.start_idx)
                .limit(limit)
            )
        ).all()
        found = {int(r.start_idx) for r in rows} | {
            int(r.end_idx) for r in rows if r.end_idx is not None
        }
        found |= await _subject_entries(conn, set(), {r.tenant_id for r in rows})
    elif query.kind == "attribution.endpoint":
        t = endpoint_intervals
        conds = [
            t.c.endpoint_ip == query.ip,
            t.c.start_ts <= query.at,
            or_(t.c.end_ts.is_(None), t.c.end_ts >= query.at),
        ]
        if query.port is not None:
            conds.append(t.c.endpoint_port == query.port)
        rows = (
            await conn.execute(select(t).where(*conds).order_by(t.c.start_idx).limit(limit))
        ).all()
        found = {int(r.start_idx) for r in rows} | {
            int(r.end_idx) for r in rows if r.end_idx is not None
        }
        found |= await _subject_entries(
            conn, {r.peer_id for r in rows}, {r.tenant_id for r in rows if r.tenant_id}
        )
    else:
        column = (
            log_entries.c.tenant_id if query.kind == "activity.tenant" else log_entries.c.peer_id
        )
        subject = query.tenant_id if query.kind == "activity.tenant" else query.peer_id
        rows = (
            await conn.execute(
                select(log_entries.c.idx)
                .where(
                    column == subject,
                    log_entries.c.ts >= query.start,
                    log_entries.c.ts <= query.end,
                    log_entries.c.leaf.is_not(None),
                    log_entries.c.type != "regulator.query",
                )
                .order_by(log_entries.c.idx)
                .limit(limit)
            )
        ).all()
        found = {int(r.idx) for r in rows}
    return sorted(found)[:limit]
