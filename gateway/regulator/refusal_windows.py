"""The refusal limiter's windows in the database, so every control-plane process shares one
budget per key id (a second process must not give an attacker a second budget)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Column, Integer, String, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.regulator.refusals import RefusalWindow, admit
from provisioning.schema import UTCDateTime, metadata

if TYPE_CHECKING:
    from gateway.db import Database

# One row per registered key id that was ever refused (unknown key ids never get here).
refusal_windows = Table(
    "regulator_refusal_windows",
    metadata,
    Column("keyid", String(128), primary_key=True),
    Column("started", UTCDateTime, nullable=False),
    Column("logged", Integer, nullable=False),
    Column("suppressed", Integer, nullable=False),
)


class RefusalWindows:
    """`admit(keyid)`: one write transaction per refusal of a registered key id, with the
    key id's row locked (PostgreSQL; SQLite has one writer) from read to update."""

    def __init__(self, *, db: Database, clock: Callable[[], datetime], per_minute: int) -> None:
        self._db = db
        self._clock = clock
        self._per_minute = per_minute

    async def admit(self, keyid: str) -> int | None:
        now = self._clock()
        async with self._db.write() as conn:
            first = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(
                refusal_windows
            ).on_conflict_do_nothing()
            await conn.execute(first.values(keyid=keyid, started=now, logged=0, suppressed=0))
            mine = select(refusal_windows).where(refusal_windows.c.keyid == keyid)
            row = (await conn.execute(mine.with_for_update())).one()
            window, dropped = admit(
                RefusalWindow(row.started, row.logged, row.suppressed), now, self._per_minute
            )
            await conn.execute(
                update(refusal_windows)
                .where(refusal_windows.c.keyid == keyid)
                .values(started=window.started, logged=window.logged,
                        suppressed=window.suppressed)
            )
        return dropped
