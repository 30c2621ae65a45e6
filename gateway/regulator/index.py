"""Derived tables built from sequenced log entries, so regulator queries never scan the log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Table, and_, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.canonical import parse_time
from gateway.audit.log import SequencedEntry
from gateway.audit.schema import address_intervals, egress_intervals, endpoint_intervals


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """'203.0.113.9:51820' or '[2001:db8::1]:51820' → (ip, port)."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


async def _close(
    conn: AsyncConnection, table: Table, where: ColumnElement[bool], entry: SequencedEntry
) -> None:
    """End the open interval(s) matching `where` at this entry."""
    await conn.execute(
        update(table)
        .where(and_(where, table.c.end_idx.is_(None)))
        .values(end_ts=entry.ts, end_idx=entry.index)
    )


SESSION_TYPES = frozenset({"session.started", "session.roamed", "session.ended"})

_t = endpoint_intervals
# On the raw driver (gateway.audit.storage): the sequencer runs these for every batch of
# session events, and SQLAlchemy's per-row parameter processing was most of their cost.
_CLOSE_PEER_ENDPOINTS = (f"UPDATE {_t.name} SET end_ts = ?, end_idx = ? "  # noqa: S608
                         "WHERE peer_id = ? AND end_idx IS NULL")
_INSERT_ENDPOINTS = (f"INSERT INTO {_t.name} (endpoint_ip, endpoint_port, peer_id, "  # noqa: S608
                     "tenant_id, start_ts, start_idx, end_ts, end_idx) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


class SessionIntervals:
    """The endpoint intervals of one batch's session events, worked out in memory.

    Session events are by far the most numerous and touch no other table, so they need
    not be written one by one: each event ends the peer's open interval and (unless it is
    `session.ended`) opens the next. An interval opened and ended within the batch is
    inserted already ended; an interval stored before the batch is ended by the peer's
    first event in it. The database then sees one executemany of closes (at most one per
    peer) and one of inserts, with the same rows as event-by-event writing would leave.
    """

    def __init__(self) -> None:
        self.closes: dict[str, tuple[datetime, int]] = {}  # peer → its first event's position
        # Rows in _INSERT_ENDPOINTS' column order; a row opened in this batch is ended in
        # place (end_ts, end_idx) by the peer's next event.
        self.open: dict[str, list[Any]] = {}  # peer → row opened in this batch
        self.rows: list[list[Any]] = []  # every row opened in this batch, log order

    def add(self, entry: SequencedEntry) -> None:
        event = entry.event
        peer = event["peer_id"]
        opened = self.open.pop(peer, None)
        if opened is not None:
            opened[6], opened[7] = entry.ts, entry.index
        elif peer not in self.closes:
            self.closes[peer] = (entry.ts, entry.index)
        if event["type"] != "session.ended":
            ip, port = split_endpoint(event["endpoint"])
            row = [ip, port, peer, event.get("tenant_id"), _session_start(event, entry),
                   entry.index, None, None]
            self.rows.append(row)
            self.open[peer] = row

    async def write(self, conn: AsyncConnection) -> None:
        stored = storage.TimeColumns(conn).value
        # Closes first: they must not touch the rows this batch inserts.
        if self.closes:
            await storage.executemany(conn, _CLOSE_PEER_ENDPOINTS, [
                (stored(ts), idx, peer) for peer, (ts, idx) in self.closes.items()])
        if self.rows:
            await storage.executemany(conn, _INSERT_ENDPOINTS, [
                (ip, port, peer, tenant, stored(start), start_idx,
                 None if end is None else stored(end), end_idx)
                for ip, port, peer, tenant, start, start_idx, end, end_idx in self.rows])


async def index_entries(conn: AsyncConnection, entries: Sequence[SequencedEntry]) -> None:
    """Update the interval tables for one sequenced batch, in log order.

    New intervals are buffered and written with one executemany per table; the buffer
    is flushed before any interval is closed, so a close always sees what preceded it.
    Session events only touch endpoint intervals, so they are worked out apart
    (`SessionIntervals`) and written once at the end of the batch.
    """
    sessions = SessionIntervals()
    pending: dict[Table, list[dict[str, object]]] = {
        address_intervals: [],
        egress_intervals: [],
    }

    async def flush() -> None:
        for table, rows in pending.items():
            if rows:
                await conn.execute(insert(table), rows)
                rows.clear()

    for entry in entries:
        event = entry.event
        kind = event["type"]
        if kind == "peer.provisioned":
            pending[address_intervals].extend(
                {
                    "address": ip,
                    "peer_id": event["peer_id"],
                    "tenant_id": event["tenant_id"],
                    "start_ts": entry.ts,
                    "start_idx": entry.index,
                }
                for ip in event["tunnel_ips"]
            )
        elif kind == "peer.reaffirmed":
            # The same holding, restated before retention erased its first record: from
            # now on this entry is the readable record of the interval (its start time,
            # the holding's own start, stays as it was).
            await flush()
            t = address_intervals
            for ip in event["tunnel_ips"]:
                moved = await conn.execute(
                    update(t)
                    .where(t.c.address == ip, t.c.peer_id == event["peer_id"],
                           t.c.end_idx.is_(None))
                    .values(start_idx=entry.index)
                )
                if moved.rowcount == 0:  # an index rebuilt after its first record went
                    pending[t].append({
                        "address": ip, "peer_id": event["peer_id"],
                        "tenant_id": event["tenant_id"],
                        "start_ts": parse_time(event["held_since"]), "start_idx": entry.index,
                    })
        elif kind == "address.released":
            await flush()
            t = address_intervals
            await _close(
                conn,
                t,
                and_(t.c.address == event["address"], t.c.peer_id == event["peer_id"]),
                entry,
            )
        elif kind == "egress.configured":
            await flush()
            t = egress_intervals
            await _close(conn, t, t.c.gateway_id == event["gateway_id"], entry)
            pending[t].append(
                {
                    "gateway_id": event["gateway_id"],
                    "fields": json.dumps(event, sort_keys=True),
                    "start_ts": entry.ts,
                    "start_idx": entry.index,
                }
            )
        elif kind == "egress.reaffirmed":
            # The mapping in force, restated before retention erased its egress.configured:
            # this entry becomes the interval's readable record; its start stays.
            await flush()
            t = egress_intervals
            moved = await conn.execute(
                update(t)
                .where(t.c.gateway_id == event["gateway_id"], t.c.end_idx.is_(None))
                .values(start_idx=entry.index)
            )
            if moved.rowcount == 0:
                pending[t].append({
                    "gateway_id": event["gateway_id"],
                    "fields": json.dumps(event, sort_keys=True),
                    "start_ts": parse_time(event["configured_at"]),
                    "start_idx": entry.index,
                })
        elif kind in SESSION_TYPES:
            sessions.add(entry)
    await flush()
    await sessions.write(conn)


def _session_start(event: dict[str, object], entry: SequencedEntry) -> datetime:
    """A session starts at its first handshake, which precedes the event's own time."""
    first = event.get("first_handshake")
    return parse_time(first) if isinstance(first, str) else entry.ts
