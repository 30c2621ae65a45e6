"""SQLite: the writer does not checkpoint the WAL inside its commits (they run on the event
loop's thread); a PASSIVE checkpoint runs on a worker thread every so many commits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from gateway import db as dbmodule
from gateway.db import CHECKPOINT_EVERY_COMMITS, Database


async def test_the_writer_leaves_checkpoints_to_a_worker_thread(tmp_path: Path) -> None:
    path = tmp_path / "vpngw.db"
    database = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await database.migrate()
        async with database.write() as conn:
            assert await conn.scalar(text("PRAGMA wal_autocheckpoint")) == 0
            await conn.execute(text("CREATE TABLE filler (n INTEGER, pad BLOB)"))
        checkpointer = database._checkpointer
        assert isinstance(checkpointer, dbmodule._Checkpointer)
        for n in range(CHECKPOINT_EVERY_COMMITS):
            async with database.write() as conn:
                await conn.execute(text("INSERT INTO filler VALUES (:n, zeroblob(20000))"),
                                   {"n": n})
        running = checkpointer._running
        assert running is not None  # the commits asked for a checkpoint
        await running  # ran (on a worker thread) without an error
    finally:
        await database.dispose()
    # Everything committed is there, whoever copied it into the database file.
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM filler").fetchone()[0] == (
            CHECKPOINT_EVERY_COMMITS)


def test_no_checkpointer_for_an_in_memory_database() -> None:
    assert dbmodule._Checkpointer.for_url("sqlite+aiosqlite:///:memory:") is None
    assert dbmodule._Checkpointer.for_url("sqlite+aiosqlite:///x.db") is not None
