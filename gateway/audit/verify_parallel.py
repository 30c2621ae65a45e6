"""Worker processes for `audit verify`: start them, hand the run their results in order.

Each worker (verify_worker) checks every n-th chunk of the log over its own connection
in the same snapshot; ChunkWorkers reads their results round robin, so the run in
verify.py folds chunk 0, 1, 2, ... exactly as when it checks them in-process.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from gateway.audit.verify_chunk import ChunkResult
from gateway.audit.verify_worker import LENGTH, chunk_count

__all__ = ["ChunkWorkers", "WorkerError"]

# The checkout this module is in: workers import the same gateway, wherever it runs from.
_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerError(RuntimeError):
    """A verify worker process failed (its own error is in the message)."""


class ChunkWorkers:
    """``workers`` processes checking chunks 0, 1, 2, ... of [FIRST, end) round robin.

    ``connect`` says how a worker reaches the database: {"sqlite": path} or
    {"postgres": dsn, "snapshot": id}. ``sizes`` are the checkpoint sizes to give
    prefixes for. Use as an async context manager; results() yields in chunk order.
    """

    def __init__(self, *, workers: int, connect: dict[str, str], chunk: int, end: int,
                 sizes: Sequence[int], check_json: bool, payload_keys: str | None = None) -> None:
        self._count = workers
        # payload_keys: the key file workers open sealed leaves with (None: plaintext log).
        self._job = {"connect": connect, "chunk": chunk, "end": end, "sizes": list(sizes),
                     "check_json": check_json, "stride": workers, "payload_keys": payload_keys}
        self._chunks = chunk_count(end, chunk)
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> ChunkWorkers:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            for w in range(self._count):
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "gateway.audit.verify_worker",
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
                size = LENGTH.unpack(await proc.stdout.readexactly(LENGTH.size))[0]
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
