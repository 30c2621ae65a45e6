"""Approval rows and sensitive settings in force: reads and writes, nothing decided here."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals.policy import Approval, Status
from gateway.approvals.schema import approvals, settings_in_force
from provisioning.errors import NotFound


def _approval(row: object) -> Approval:
    m = row._mapping  # type: ignore[attr-defined]
    return Approval(
        id=m["id"],
        kind=m["kind"],
        status=Status(m["status"]),
        payload=json.loads(m["payload"]),
        requested_by=m["requested_by"],
        requested_person=m["requested_person"],
        requested_at=m["requested_at"],
        expires_at=m["expires_at"],
        decided_by=m["decided_by"],
        decided_at=m["decided_at"],
        reason=m["reason"],
    )


async def insert_approval(conn: AsyncConnection, approval: Approval) -> None:
    await conn.execute(
        insert(approvals).values(
            id=approval.id,
            kind=approval.kind,
            status=approval.status.value,
            payload=json.dumps(approval.payload, sort_keys=True),
            requested_by=approval.requested_by,
            requested_person=approval.requested_person,
            requested_at=approval.requested_at,
            expires_at=approval.expires_at,
        )
    )


async def get_approval(conn: AsyncConnection, approval_id: str, *, lock: bool = False) -> Approval:
    query = select(approvals).where(approvals.c.id == approval_id)
    if lock:
        # Of two concurrent decisions one decides, the other sees it decided.
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no approval with id {approval_id}; list them with GET /ops/v1/approvals")
    return _approval(row)


async def list_approvals(
    conn: AsyncConnection, *, status: Status | None, limit: int
) -> list[Approval]:
    query = select(approvals).order_by(approvals.c.requested_at.desc(), approvals.c.id.desc())
    if status is not None:
        query = query.where(approvals.c.status == status.value)
    return [_approval(r) for r in (await conn.execute(query.limit(limit))).all()]


async def due_ids(conn: AsyncConnection, now: datetime) -> list[str]:
    """Pending approvals whose time is up, oldest first."""
    rows = await conn.execute(
        select(approvals.c.id)
        .where(approvals.c.status == Status.PENDING.value, approvals.c.expires_at <= now)
        .order_by(approvals.c.expires_at, approvals.c.id)
    )
    return [r.id for r in rows]


async def record_decision(
    conn: AsyncConnection,
    approval: Approval,
    status: Status,
    *,
    by: str,
    now: datetime,
    reason: str | None = None,
) -> Approval:
    await conn.execute(
        update(approvals)
        .where(approvals.c.id == approval.id)
        .values(status=status.value, decided_by=by, decided_at=now, reason=reason)
    )
    return Approval(
        **{**approval.__dict__, "status": status, "decided_by": by, "decided_at": now,
           "reason": reason}
    )


async def setting_in_force(conn: AsyncConnection, name: str) -> str | None:
    value: str | None = await conn.scalar(
        select(settings_in_force.c.value).where(settings_in_force.c.name == name)
    )
    return value


async def set_setting(
    conn: AsyncConnection, name: str, value: str, *, by: str, now: datetime
) -> None:
    found = await conn.scalar(
        select(settings_in_force.c.name).where(settings_in_force.c.name == name).with_for_update()
    )
    values = {"value": value, "changed_at": now, "changed_by": by}
    if found is None:
        await conn.execute(insert(settings_in_force).values(name=name, **values))
    else:
        await conn.execute(
            update(settings_in_force).where(settings_in_force.c.name == name).values(**values)
        )
