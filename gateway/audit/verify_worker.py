"""Reading log entries for `audit verify`, and the worker process that checks chunks of them.

``read_entries`` is the one place the verifier reads ``log_entries``, in-process and in
the workers alike. A worker is ``python -m gateway.audit.verify_worker``, started by
verify_parallel.ChunkWorkers: it reads one JSON job line on stdin, opens its own
connection (a SQLite file, or PostgreSQL in the parent's exported snapshot), checks
every ``stride``-th chunk from ``first`` with check_chunk and writes each result to
stdout (8-byte length, pickle). It imports only what checking needs: no SQLAlchemy, and
asyncio only to reach PostgreSQL, so it starts in a tenth of a second.
"""

from __future__ import annotations

import bisect
import gc
import json
import pickle
import re
import sqlite3
import struct
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from gateway.audit.payloadkeys import PayloadKeys, open_rows
from gateway.audit.sqltext import numbered
from gateway.audit.verify_chunk import check_chunk

__all__ = ["FIRST", "LENGTH", "RowSource", "chunk_count", "chunk_start", "read_entries"]

# Where the first chunk starts: below 0, so a row slipped in at a negative index shows.
FIRST = -(1 << 62)
LENGTH = struct.Struct(">Q")
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")
_T = TypeVar("_T")


class RowSource(Protocol):
    # The payload keys sealed leaves are opened with (None: the log is plaintext).
    @property
    def keys(self) -> PayloadKeys | None: ...

    async def rows(self, sql: str, *params: Any) -> list[Sequence[Any]]: ...


async def read_entries(source: RowSource, start: int, end: int,
                       limit: int) -> list[Sequence[Any]]:
    """(idx, leaf or None, leaf_hash) of the first ``limit`` entries with start <= idx < end,
    in index order, sealed leaves opened (payloadkeys.open_rows)."""
    rows = await source.rows("SELECT idx, leaf, leaf_hash FROM log_entries "
                             "WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?", start, end, limit)
    return open_rows(rows, source.keys)


def chunk_start(k: int, chunk: int) -> int:
    """Where chunk k's read starts (chunk k holds entries k * chunk onwards)."""
    return FIRST if k == 0 else k * chunk


def chunk_count(end: int, chunk: int) -> int:
    """Chunks that cover entries [0, end); at least one, which finds an empty log empty."""
    return max(1, -(-end // chunk))


class _SQLiteRows:
    def __init__(self, path: str, keys: PayloadKeys | None) -> None:
        self.keys = keys
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA query_only = 1")
        self._conn.execute("BEGIN")  # one snapshot for all of this worker's chunks

    async def rows(self, sql: str, *params: Any) -> list[Sequence[Any]]:
        return self._conn.execute(sql, params).fetchall()


class _PostgresRows:
    def __init__(self, conn: Any, keys: PayloadKeys | None) -> None:
        self._conn = conn
        self.keys = keys

    @classmethod
    async def open(cls, dsn: str, snapshot: str, keys: PayloadKeys | None) -> _PostgresRows:
        import asyncpg  # only PostgreSQL workers pay for the import

        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        conn = await asyncpg.connect(dsn)
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # The parent's snapshot: every worker sees exactly what the parent sees.
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        return cls(conn, keys)

    async def rows(self, sql: str, *params: Any) -> list[Sequence[Any]]:
        return list(await self._conn.fetch(numbered(sql), *params))


def _complete(step: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never suspends (SQLite reads are plain calls here)."""
    try:
        step.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    step.close()
    raise RuntimeError("a SQLite read suspended")


async def _work(job: dict[str, Any], source: RowSource, out: BinaryIO) -> None:
    chunk, end, sizes = job["chunk"], job["end"], sorted(job["sizes"])
    for k in range(job["first"], chunk_count(end, chunk), job["stride"]):
        pos = k * chunk
        rows = await read_entries(source, chunk_start(k, chunk), end, chunk)
        inside = sizes[bisect.bisect_right(sizes, pos):bisect.bisect_right(sizes, pos + chunk)]
        result = check_chunk(rows, pos, inside, check_json=job["check_json"])
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(LENGTH.pack(len(data)) + data)
        out.flush()
        if result.problem is not None or result.rows < chunk:
            return  # the run stops here; nothing later is read


def main() -> None:
    # The worker makes no reference cycles; the collector would only rescan each chunk's
    # rows and decoded leaves (about a tenth of the time).
    gc.disable()
    job = json.loads(sys.stdin.readline())
    connect, out = job["connect"], sys.stdout.buffer
    keys = PayloadKeys(Path(job["payload_keys"])) if job.get("payload_keys") else None
    if "sqlite" in connect:
        _complete(_work(job, _SQLiteRows(connect["sqlite"], keys), out))
        return
    import asyncio  # only PostgreSQL workers pay for it

    async def on_postgres() -> None:
        source = await _PostgresRows.open(connect["postgres"], connect["snapshot"], keys)
        await _work(job, source, out)

    asyncio.run(on_postgres())


if __name__ == "__main__":
    main()
