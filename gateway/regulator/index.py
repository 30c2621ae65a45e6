"""Derived tables built from sequenced log entries, so regulator queries never scan the log."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Table, and_, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

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


async def index_entries(conn: AsyncConnection, entries: Sequence[SequencedEntry]) -> None:
    """Update the interval tables for one sequenced batch, in log order.

    New intervals are buffered and written with one executemany per table; the buffer
    is flushed before any interval is closed, so a close always sees what preceded it.
    """
    pending: dict[Table, list[dict[str, object]]] = {
        address_intervals: [],
        endpoint_intervals: [],
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
        elif kind in ("session.started", "session.roamed", "session.ended"):
            await flush()
            t = endpoint_intervals
            await _close(conn, t, t.c.peer_id == event["peer_id"], entry)
            if kind != "session.ended":
                ip, port = split_endpoint(event["endpoint"])
                pending[t].append(
                    {
                        "endpoint_ip": ip,
                        "endpoint_port": port,
                        "peer_id": event["peer_id"],
                        "tenant_id": event.get("tenant_id"),
                        "start_ts": _session_start(event, entry),
                        "start_idx": entry.index,
                    }
                )
    await flush()


def _session_start(event: dict[str, object], entry: SequencedEntry) -> datetime:
    """A session starts at its first handshake, which precedes the event's own time."""
    first = event.get("first_handshake")
    return parse_time(first) if isinstance(first, str) else entry.ts
