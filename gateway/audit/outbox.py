"""Turns use-case events into canonical leaf bytes in the outbox, in the caller's transaction."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.canonical import canonical_many, format_time
from gateway.audit.schema import outbox
from provisioning.driver import Driver
from provisioning.events import Event

SALT_BYTES = 16


def event_document(event: Event, *, ts: datetime, salt: bytes) -> dict[str, Any]:
    return _document(event, format_time(ts), base64.b64encode(salt).decode("ascii"))


def _document(event: Event, ts: str, salt: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        key: list(value) if isinstance(value, tuple) else value
        for key, value in event.attrs.items()
    }
    doc.update(v=1, type=event.type, ts=ts, salt=salt)
    return doc


def leaf_bytes(event: Event, *, ts: datetime) -> bytes:
    """The exact bytes that become the Merkle leaf; nothing re-serialises them later."""
    return leaves_of([event], ts=ts)[0]


def leaves_of(events: Sequence[Event], *, ts: datetime) -> list[bytes]:
    """leaf_bytes of each event, all at `ts`: one time string, one draw of random salts
    and one canonical encoding pass for the batch."""
    when = format_time(ts)
    salts = secrets.token_bytes(SALT_BYTES * len(events))
    encode = base64.b64encode
    return canonical_many([
        _document(event, when, encode(salts[i:i + SALT_BYTES]).decode("ascii"))
        for event, i in zip(events, range(0, len(salts), SALT_BYTES), strict=True)])


# On the raw driver (provisioning.driver: no SQLAlchemy cursor or result either): every
# state change appends here, and SQLAlchemy's per-row parameter processing was a large
# share of a big batch's cost.
_INSERT_OUTBOX = (f"INSERT INTO {outbox.name} (leaf, leaf_hash, created_at) "  # noqa: S608
                  "VALUES (?, ?, ?)")


async def append_events(conn: AsyncConnection, events: Iterable[Event], *, now: datetime) -> int:
    """Write the events' leaves to the outbox, sealed at rest (see gateway.audit.storage)."""
    leaves = leaves_of(list(events), ts=now)
    if not leaves:
        return 0
    # The plaintext never reaches the database, not even the outbox or its WAL records.
    created = storage.TimeColumns(conn).value(now)
    await (await Driver.of(conn)).executemany(_INSERT_OUTBOX, [
        (stored, h, created) for stored, h in storage.seal_leaves(conn, leaves, ts=now)])
    return len(leaves)


async def has_pending(conn: AsyncConnection) -> bool:
    """Whether any committed event still waits for the sequencer (as this snapshot sees it)."""
    return await conn.scalar(_ANY_PENDING) is not None


_ANY_PENDING = select(outbox.c.id).limit(1)
