"""Retention: erase the payload of log entries older than the retention period, keep their hashes.

Before anything is erased, every fact still in force whose record would be erased is
restated as a fresh event (see gateway.audit.reaffirm) and sequenced, so a live peer,
tenant or key always has a readable record. An erased entry keeps its leaf hash, so
every inclusion and consistency proof still verifies, and the log records the erasure
itself: one ``retention.redacted`` event per run names the index range, the count and
the cut-off, committed in the same transaction as the erasure. The derived attribution
intervals that ended before the cut-off hold the same personal data and are deleted
with it.

Erasure is physical, not just logical: SQLite runs with ``secure_delete`` (set for every
connection in gateway.db), so freed cell space is zeroed, and the WAL is checkpointed
and truncated afterwards so no old page image survives in it. PostgreSQL gets a
``VACUUM`` of the touched tables after the commit, which frees the dead row versions but
leaves their bytes in data files, WAL and backups. So payloads are stored sealed under a
key per UTC day (gateway.audit.payloadkeys, kept outside the database): once a whole day
lies before the cut-off, and no outbox row still needs its key, the key is deleted, and
that day's payloads are unreadable in every copy of the database at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import and_, delete, func, select, update

from gateway.audit import storage
from gateway.audit.canonical import format_time, parse_time
from gateway.audit.log import HEAD_ID
from gateway.audit.outbox import append_events
from gateway.audit.payloadkeys import day_of, day_start
from gateway.audit.reaffirm import FactProvider, facts_in_force
from gateway.audit.schema import (
    address_intervals,
    endpoint_intervals,
    log_entries,
    log_head,
    outbox,
)
from gateway.db import Database
from provisioning.events import Event

if TYPE_CHECKING:
    from aiohttp import web

log = structlog.get_logger("vpngw.retention")

EVENT_TYPE = "retention.redacted"


@dataclass(frozen=True)
class RedactionResult:
    before: datetime  # entries with ts < before were erased
    count: int
    from_index: int | None
    to_index: int | None
    intervals_deleted: int
    wal_truncated: bool | None = None  # SQLite only: False if readers kept the WAL busy
    reaffirmed: int = 0  # facts in force restated before the erasure
    keys_deleted: tuple[datetime, ...] = ()  # start of each UTC day whose payload key went


def cutoff_for(now: datetime, retention_days: int) -> datetime:
    """The cut-off at whole-second precision, as the event states it."""
    if retention_days < 1:
        raise ValueError("retention_days must be >= 1")
    return parse_time(format_time(now - timedelta(days=retention_days)))


async def reaffirm_in_force(
    db: Database,
    *,
    now: datetime,
    before: datetime,
    providers: Sequence[FactProvider],
    sequence: Callable[[], Awaitable[object]],
) -> int:
    """Log a fresh event for every fact in force whose record is older than `before`.

    Returns once the events are sequenced (in the log and its regulator index), so an
    erasure that follows never leaves a live fact without a readable record.
    """
    async with db.write() as conn:
        events = await facts_in_force(conn, providers, before=before)
        await append_events(conn, events, now=now)
    if events:
        await sequence()
        log.info("facts in force restated before erasure", count=len(events))
    return len(events)


async def redact_expired(
    db: Database,
    *,
    now: datetime,
    retention_days: int,
    providers: Sequence[FactProvider],
    sequence: Callable[[], Awaitable[object]],
    on_commit: Callable[[], None] | None = None,
) -> RedactionResult:
    """Erase payloads of entries with ts < now - retention_days; record it in the log.

    First every fact in force is restated by `providers` and `sequence`d (the
    sequencer's drain); if that fails, nothing is erased. ``on_commit`` is called
    after the erasure's commit when an event was appended (pass the sequencer's wake
    so the event is sequenced promptly).
    """
    before = cutoff_for(now, retention_days)
    reaffirmed = await reaffirm_in_force(db, now=now, before=before, providers=providers,
                                         sequence=sequence)
    expired = and_(log_entries.c.ts < before, log_entries.c.leaf.is_not(None))
    async with db.write() as conn:
        # The tree head's row lock (the sequencers' lock) serialises retention runs of
        # processes sharing PostgreSQL: otherwise two could count the same entries and
        # both record an erasure only one of them made.
        await conn.execute(select(log_head.c.size).where(log_head.c.id == HEAD_ID)
                           .with_for_update())
        row = (await conn.execute(
            select(func.min(log_entries.c.idx), func.max(log_entries.c.idx), func.count())
            .where(expired))).one()
        count = int(row[2])
        lo = None if row[0] is None else int(row[0])
        hi = None if row[1] is None else int(row[1])
        if count:
            # tenant_id and peer_id are copies of payload fields kept for lookups.
            await conn.execute(update(log_entries).where(expired).values(
                leaf=None, tenant_id=None, peer_id=None, redacted_at=now))
        deleted = 0
        for table in (address_intervals, endpoint_intervals):
            result = await conn.execute(delete(table).where(
                and_(table.c.end_ts.is_not(None), table.c.end_ts < before)))
            deleted += max(result.rowcount or 0, 0)
        if count:
            await append_events(conn, [Event(EVENT_TYPE, {
                "from_index": lo or 0, "to_index": hi or 0, "count": count,
                "before": format_time(before)})], now=now)
        # A day's key may go once the whole day is before the cut-off and no event of
        # it waits in the outbox (the sequencer must still open those).
        waiting = await conn.scalar(select(func.min(outbox.c.created_at)))
        keep_from = day_of(before if waiting is None else min(before, waiting))
    if count and on_commit is not None:
        on_commit()
    # Only after the commit: a crash in between leaves readable payloads, never rows
    # that still claim a payload nobody can open without a record of the erasure.
    keys_deleted = () if db.payload_keys is None else tuple(
        day_start(day) for day in db.payload_keys.forget_before(keep_from))
    truncated = None
    if count or deleted:
        truncated = await storage.purge(
            db, ("log_entries", "address_intervals", "endpoint_intervals"))
    if count or keys_deleted:
        log.info("audit payloads erased", count=count, from_index=lo, to_index=hi,
                 before=format_time(before), intervals_deleted=deleted,
                 payload_keys_deleted=[format_time(d)[:10] for d in keys_deleted])
    return RedactionResult(before=before, count=count, from_index=lo, to_index=hi,
                           intervals_deleted=deleted, wal_truncated=truncated,
                           reaffirmed=reaffirmed, keys_deleted=keys_deleted)


async def retention_job(app: web.Application) -> None:
    """The periodic job create_app runs every audit.retention_interval_seconds."""
    from gateway.approvals.pinned import retention_in_force
    from gateway.http import appkeys

    settings = app[appkeys.SETTINGS]
    sequencer = app[appkeys.SEQUENCER]
    providers: tuple[FactProvider, ...] = app[appkeys.FACT_PROVIDERS]
    now = app[appkeys.CLOCK].now()
    result = await redact_expired(app[appkeys.DATABASE], now=now,
                                  retention_days=await retention_in_force(
                                      app[appkeys.DATABASE], settings.audit.retention_days),
                                  providers=providers, sequence=sequencer.drain,
                                  on_commit=sequencer.wake)
    if result.count or result.intervals_deleted or result.keys_deleted:
        # /readyz shows the last erasure once it is complete on disk (WAL purge included).
        report = last_erasure_report(result, at=now)
        app[appkeys.RUNTIME].informational["retention"] = lambda: report


def last_erasure_report(result: RedactionResult, *, at: datetime) -> dict[str, object]:
    return {"last_erasure": {
        "at": format_time(at), "before": format_time(result.before), "count": result.count,
        "from_index": result.from_index, "to_index": result.to_index,
        "intervals_deleted": result.intervals_deleted, "wal_truncated": result.wal_truncated,
        "payload_keys_deleted": [format_time(d)[:10] for d in result.keys_deleted]}}
