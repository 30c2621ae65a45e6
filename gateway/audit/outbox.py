"""Turns use-case events into canonical leaf bytes in the outbox, in the caller's transaction."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.canonical import canonical_json, format_time
from gateway.audit.schema import outbox
from provisioning.events import Event

SALT_BYTES = 16


def event_document(event: Event, *, ts: datetime, salt: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in event.attrs.items()
    }
    doc.update(
        v=1, type=event.type, ts=format_time(ts), salt=base64.b64encode(salt).decode("ascii")
    )
    return doc


def leaf_bytes(event: Event, *, ts: datetime) -> bytes:
    """The exact bytes that become the Merkle leaf; nothing re-serialises them later."""
    return canonical_json(event_document(event, ts=ts, salt=secrets.token_bytes(SALT_BYTES)))


# Built once: every state change appends here, and a fresh insert() per call costs
# SQLAlchemy statement construction and cache-key generation each time.
_INSERT_OUTBOX = insert(outbox)


async def append_events(conn: AsyncConnection, events: Iterable[Event], *, now: datetime) -> int:
    """Write the events' leaves to the outbox, sealed at rest (see gateway.audit.storage)."""
    leaves = [leaf_bytes(e, ts=now) for e in events]
    if not leaves:
        return 0
    # The plaintext never reaches the database, not even the outbox or its WAL records.
    rows = [{"leaf": stored, "leaf_hash": h, "created_at": now}
            for stored, h in storage.seal_leaves(conn, leaves, ts=now)]
    if len(rows) == 1:
        await conn.execute(_INSERT_OUTBOX, rows[0])  # one row: skip the executemany path
    else:
        await conn.execute(_INSERT_OUTBOX, rows)
    return len(rows)


async def has_pending(conn: AsyncConnection) -> bool:
    """Whether any committed event still waits for the sequencer (as this snapshot sees it)."""
    return await conn.scalar(_ANY_PENDING) is not None


_ANY_PENDING = select(outbox.c.id).limit(1)
