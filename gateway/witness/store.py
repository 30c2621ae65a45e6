"""The witness's durable state: the last checkpoint cosigned per log origin, in SQLite.

Checking the old size and storing the new checkpoint happen in one SQLite write
transaction (BEGIN IMMEDIATE), so two submissions can never roll the state back, even
from two processes sharing the file; the commit is synced before the witness answers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.witness.protocol import Latest

STATE_FILE = "witness.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS latest (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    updated_at INTEGER NOT NULL
)
"""


class WitnessStore:
    """One SQLite file; each call runs in a worker thread, never on the event loop."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = directory / STATE_FILE
        with self._connect() as conn:
            conn.execute(_SCHEMA)
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        # FULL: the commit reaches the disk before the cosignature leaves.
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _read_all(self, conn: sqlite3.Connection) -> dict[str, Latest]:
        rows = conn.execute("SELECT origin, size, root, note FROM latest").fetchall()
        return {str(o): Latest(int(s), bytes(r), str(n)) for o, s, r, n in rows}

    async def latest(self) -> dict[str, Latest]:
        def read() -> dict[str, Latest]:
            with self._connect() as conn:
                return self._read_all(conn)

        return await asyncio.to_thread(read)

    async def update(
        self, decide: Callable[[dict[str, Latest]], tuple[str, Latest | None]]
    ) -> None:
        """Run ``decide`` on the current state and store what it returns, atomically.

        ``decide`` returns (origin, new latest or None to store nothing).
        """

        def run() -> None:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                origin, new = decide(self._read_all(conn))
                if new is not None:
                    conn.execute(
                        "INSERT INTO latest (origin, size, root, note, updated_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
                        "size = excluded.size, root = excluded.root, note = excluded.note, "
                        "updated_at = excluded.updated_at",
                        (origin, new.size, new.root, new.note, int(time.time())))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                conn.close()

        async with self._lock:
            await asyncio.to_thread(run)
