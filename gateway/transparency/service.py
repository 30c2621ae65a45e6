"""Builds a quarter's report from the log (I/O): the entries, the range, the checkpoint."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.note import Ed25519NoteSigner, sign_note
from gateway.audit.schema import checkpoints, log_entries
from gateway.transparency.report import (
    EVENT_TYPES,
    LogRange,
    Period,
    note_body,
    report,
    tally,
)
from provisioning.errors import DomainError
from provisioning.validation import rfc3339


class NotPublished(DomainError):
    """The quarter has not ended, or its embargo has not passed."""

    status = 404
    code = "report-not-published"
    title = "Report not published yet"

    def __init__(self, period: Period, published_from: datetime, embargo: timedelta) -> None:
        super().__init__(
            f"the report for {period} is published from {rfc3339(published_from)} "
            f"(the end of the quarter plus {embargo.days} days)",
            field="period",
        )
        self.period = period
        self.published_from = published_from


class ReportNotReady(DomainError):
    """No checkpoint covers the quarter yet: the sequencer has not signed past it."""

    status = 503
    code = "report-not-ready"
    title = "Report not ready"


async def quarter_events(conn: AsyncConnection, period: Period) -> list[dict[str, Any] | None]:
    """The quarter's query events in log order; None for a payload retention erased."""
    rows = await conn.execute(
        select(log_entries.c.leaf, log_entries.c.leaf_hash)
        .where(
            log_entries.c.type.in_(EVENT_TYPES),
            log_entries.c.ts >= period.start,
            log_entries.c.ts < period.end,
        )
        .order_by(log_entries.c.idx)
    )
    opener = storage.Opener.of(conn)
    return [opener.event(r.leaf, r.leaf_hash) for r in rows]


async def _log_range(conn: AsyncConnection, period: Period) -> LogRange:
    first, last = (
        await conn.execute(
            select(func.min(log_entries.c.idx), func.max(log_entries.c.idx)).where(
                log_entries.c.ts >= period.start, log_entries.c.ts < period.end
            )
        )
    ).one()
    # The smallest checkpoint that commits to the whole quarter: the same one every time.
    query = select(checkpoints.c.size, checkpoints.c.note).order_by(checkpoints.c.size)
    if last is not None:
        query = query.where(checkpoints.c.size > last)
    row = (await conn.execute(query.limit(1))).first()
    if row is None:  # the sequencer has not signed past the quarter yet
        raise ReportNotReady(
            "the log has no checkpoint covering the quarter yet; retry shortly"
        )
    return LogRange(
        first_index=None if first is None else int(first),
        last_index=None if last is None else int(last),
        checkpoint_size=int(row.size),
        checkpoint=str(row.note),
    )


async def build_report(
    conn: AsyncConnection,
    period: Period,
    *,
    now: datetime,
    embargo: timedelta,
    signer: Ed25519NoteSigner,
) -> tuple[dict[str, Any], str]:
    """(report document, signed note) for a published quarter; raises NotPublished."""
    published_from = period.published_from(embargo)
    if now < published_from:
        raise NotPublished(period, published_from, embargo)
    counts = tally(await quarter_events(conn, period))
    document = report(period, origin=signer.name, counts=counts,
                      log=await _log_range(conn, period), published_at=published_from)
    return document, sign_note(note_body(document), [signer])
