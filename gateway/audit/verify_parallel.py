"""Reading log entries for `audit verify`, and the worker processes that check chunks of them.

``read_entries`` is the one place the verifier reads ``log_entries``, in-process and in
the workers alike. A worker is ``python -m gateway.audit.verify_parallel``: it imports only
what checking needs (no SQLAlchemy), opens its own connection (SQLite file, or PostgreSQL
in the parent's exported snapshot), checks every ``stride``-th chunk with check_chunk and
streams the results back; ``ChunkWorkers`` hands them to the run in index order.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import os
import pickle
import re
import sqlite3
import struct
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from gateway.audit.verify_chunk import ChunkResult, check_chunk

__all__ = ["FIRST", "ChunkWorkers", "RowSource", "WorkerError", "numbered", "read_entries"]

# Where the first chunk starts: below 0, so a row slipped in at a negative index shows.
FIRST = -(1 << 62)
_LENGTH = struct.Struct(">Q")
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f-]+")
# The checkout this module is in: workers import the same gateway, wherever it runs from.
_ROOT = str(Path(__file__).resolve().parents[2])


class RowSource(Protocol):
    async def rows(self, sql: str, *params: Any) -> list[Sequence[Any]]: ...


class WorkerError(RuntimeError):
    """A verify worker process failed (its own error is in the message)."""


def numbered(sql: str) -> str:
    """qmark placeholders as PostgreSQL's $1, $2, ..."""
    n = itertools.count(1)
    parts = sql.split("?")
    return parts[0] + "".join(f"${next(n)}{p}" for p in parts[1:])


async def read_entries(source: RowSource, start: int, end: int,
                       limit: int) -> list[Sequence[Any]]:
    """(idx, leaf or None, leaf_hash) of the first ``limit`` entries with start <= idx < end,
    in index order."""
    return await source.rows("SELECT idx, leaf, leaf_hash FROM log_entries "
                             "WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?", start, end, limit)


def chunk_start(k: int, chunk: int) -> int:
    return FIRST if k == 0 else k * chunk


# --- the parent's side ------------------------------------------------------------------------


class ChunkWorkers:
    """``workers`` processes checking chunks 0, 1, 2, ... of [FIRST, end) round robin.

    ``connect`` says how a worker reaches the database: {"sqlite": path} or
    {"postgres": dsn, "snapshot": id}. ``sizes`` are the checkpoint sizes to give
    prefixes for. Use as an async context manager; results() yields in chunk order.
    """

    def __init__(self, *, workers: int, connect: dict[str, str], chunk: int, end: int,
                 sizes: Sequence[int], check_json: bool) -> None:
        self._count = workers
        self._job = {"connect": connect, "chunk": chunk, "end": end, "sizes": list(sizes),
                     "check_json": check_json, "stride": workers}
        self._chunks = max(1, -(-end // chunk))
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> ChunkWorkers:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            for w in range(self._count):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.audit.verify_parallel",
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, env=env)
                self._procs.append(proc)
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({**self._job, "first": w}).encode() + b"\n")
                await proc.stdin.drain()
                proc.stdin.close()
        except BaseException:
            await self._stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stop()

    async def results(self) -> AsyncIterator[ChunkResult]:
        for k in range(self._chunks):
            proc = self._procs[k % self._count]
            assert proc.stdout is not None
            try:
                size = _LENGTH.unpack(await proc.stdout.readexactly(_LENGTH.size))[0]
                result = pickle.loads(await proc.stdout.readexactly(size))  # noqa: S301 - our child
            except asyncio.IncompleteReadError:
                raise WorkerError(await self._failure(proc)) from None
            if not isinstance(result, ChunkResult):
                raise WorkerError(f"verify worker sent {type(result).__name__}")
            yield result

    async def _failure(self, proc: asyncio.subprocess.Process) -> str:
        assert proc.stderr is not None
        await proc.wait()
        err = (await proc.stderr.read()).decode(errors="replace").strip().splitlines()
        return (f"a verify worker exited with status {proc.returncode}: "
                + (err[-1] if err else "no message"))

    async def _stop(self) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                proc.kill()  # mid-run after a problem: its remaining chunks are not needed
        for proc in self._procs:
            await proc.communicate()
        self._procs.clear()


# --- the worker's side ------------------------------------------------------------------------


class _SQLiteRows:
    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA query_only = 1")
        self._conn.execute("BEGIN")  # one snapshot for all of this worker's chunks

    async def rows(self, sql: str, *params: Any) -> list[Sequence[Any]]:
        return self._conn.execute(sql, params).fetchall()


class _PostgresRows:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, dsn: str, snapshot: str) -> _PostgresRows:
        import asyncpg  # only PostgreSQL workers pay for the import

        if not _SNAPSHOT_ID.fullmatch(snapshot):
            raise ValueError(f"not a snapshot id: {snapshot!r}")
        conn = await asyncpg.connect(dsn)
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # The parent's snapshot: every worker sees exactly what the parent sees.
        await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        return cls(conn)

    async def rows(self, sql: str, *params: Any) -> list[Sequence[Any]]:
        return list(await self._conn.fetch(numbered(sql), *params))


async def _work(job: dict[str, Any], out: BinaryIO) -> None:
    connect = job["connect"]
    source: RowSource
    if "sqlite" in connect:
        source = _SQLiteRows(connect["sqlite"])
    else:
        source = await _PostgresRows.open(connect["postgres"], connect["snapshot"])
    chunk, end, sizes = job["chunk"], job["end"], sorted(job["sizes"])
    for k in range(job["first"], max(1, -(-end // chunk)), job["stride"]):
        pos = k * chunk
        rows = await read_entries(source, chunk_start(k, chunk), end, chunk)
        inside = sizes[bisect.bisect_right(sizes, pos):bisect.bisect_right(sizes, pos + chunk)]
        result = check_chunk(rows, pos, inside, check_json=job["check_json"])
        data = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(_LENGTH.pack(len(data)) + data)
        out.flush()
        if result.problem is not None or result.rows < chunk:
            return  # the run stops here; nothing later is read


def main() -> None:
    job = json.loads(sys.stdin.readline())
    asyncio.run(_work(job, sys.stdout.buffer))


if __name__ == "__main__":
    main()
