"""Background task that moves committed events from the outbox into the Merkle log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.log import AuditLog

log = structlog.get_logger("vpngw.sequencer")

# About 10-20 ms of sequencing on a busy 2-core machine: a request that arrives during a
# pass waits for one slice, not for the whole backlog (5,000 rows were ~0.4 s).
SLICE_ROWS = 256
# A background pass starts this long after the commit that woke it, so the commits of a
# busy moment share one pass (each has a fixed cost: head, frontier, signature, commit).
GATHER_SECONDS = 0.02


# PostgreSQL: the session advisory lock held by the process that runs background passes.
LEADER_LOCK = 0x7670_7371  # "vpsq"


class Leadership:
    """On PostgreSQL, one process at a time runs the background passes.

    Every process's passes lock the log head, so two processes sequencing after each of
    their commits mostly waited for each other and then found the outbox emptied (one
    transaction each for nothing). The holder of a session advisory lock (on a connection
    kept for it) sequences in the background, every process's rows alike, since the
    outbox is shared; the others leave theirs to it and try for the lock now and then,
    so a leader that stops (it unlocks) or dies (its session ends) is replaced within a
    poll. Only an
    optimisation: drain() passes run in any process, the head lock still serialises
    passes, and if the lock's connection is lost two processes merely sequence as before.
    """

    def __init__(self, db: Any, *, retry_seconds: float) -> None:
        self._db = db
        self._retry_seconds = retry_seconds
        self._conn: AsyncConnection | None = None
        self._tried_at = float("-inf")

    async def held(self) -> bool:
        if self._conn is not None:
            return True
        loop = asyncio.get_running_loop()
        if loop.time() - self._tried_at < self._retry_seconds:
            return False
        self._tried_at = loop.time()
        conn = await self._db.engine.connect()
        try:
            won = await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"),
                                    {"key": LEADER_LOCK})
            await conn.commit()  # the session lock stays; no transaction is left open
        except BaseException:
            await conn.close()
            raise
        if won:
            self._conn = conn
            log.info("this process sequences the audit log in the background")
            return True
        await conn.close()
        return False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # The pool would keep the session (and the lock) alive: unlock, then close.
            await conn.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": LEADER_LOCK})
            await conn.commit()
        except Exception:  # the session is gone or broken: make sure it ends
            with contextlib.suppress(Exception):
                await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()


class Sequencer:
    """Woken after every commit that wrote events; also polls, for other processes' commits.

    Sequencing runs as one pass at a time in this process, whoever asks for it (the
    background loop, a regulator query waiting for its event, start-up, retention): a
    caller joins the next pass that has not started yet, because a pass already running
    may have read the outbox before the caller's commit. So a burst of wakes costs one
    pass, and no two passes of this process race for the log head.

    Background passes sign a checkpoint at most every `checkpoint_seconds` (signing on
    every small pass was a large part of its cost under a stream of commits); a head it
    moved unsigned is signed at the latest that long after the last checkpoint (the task
    wakes for it), and every poll signs a head another process left unsigned once that
    time has passed. A pass that any drain() caller joined always ends with the head signed.
    """

    def __init__(self, *, log: AuditLog, batch: int, interval: float,
                 checkpoint_seconds: float = 0.5, slice_rows: int = SLICE_ROWS,
                 gather_seconds: float = GATHER_SECONDS) -> None:
        self.log = log
        self.batch = batch
        # Rows per transaction: a pass moves a backlog in slices and lets waiting requests
        # run between them (on SQLite a slice holds the loop and the write lock).
        self.slice_rows = max(1, min(batch, slice_rows))
        self.interval = interval
        self.gather_seconds = gather_seconds
        self.checkpoint_seconds = checkpoint_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._next: asyncio.Future[int] | None = None  # the pass not started yet
        self._next_signs = False  # whether a caller of that pass needs the head signed
        self._worker: asyncio.Task[None] | None = None
        self._signed_at = float("-inf")  # loop time of this process's last signing pass
        self._unsigned = False  # this process moved the head since it last signed
        self.on_status: Callable[[bool, str], None] = lambda ok, detail: None
        db = getattr(log, "db", None)
        self.leadership = (Leadership(db, retry_seconds=max(interval, 0.2))
                           if db is not None and not db.is_sqlite else None)

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then return from run() (never cancel mid-transaction)."""
        self._stopping = True
        self._wake.set()

    async def drain(self) -> int:
        """Return once a pass that started after this call has emptied the outbox of every
        event committed before it and signed the head; the number of events it moved.

        A caller that stops waiting (a timeout, a cancelled request) leaves the pass
        running for the others.
        """
        return await asyncio.shield(self._next_pass(sign=True))

    def _next_pass(self, *, sign: bool) -> asyncio.Future[int]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._passes(), name="sequencer-pass")
        self._next_signs = self._next_signs or sign
        return self._next

    async def _passes(self) -> None:
        while self._next is not None:
            done, self._next = self._next, None
            sign_always, self._next_signs = self._next_signs, False
            try:
                moved = await self._sequence_all(sign_always=sign_always)
            except asyncio.CancelledError:
                done.cancel()
                raise
            except Exception as exc:
                done.set_exception(exc)
                done.exception()  # retrieved: the waiters (if any) see it when they await
            else:
                done.set_result(moved)

    async def _sequence_all(self, *, sign_always: bool) -> int:
        loop = asyncio.get_running_loop()
        total = 0
        while True:
            sign = sign_always or loop.time() - self._signed_at >= self.checkpoint_seconds
            moved = await self.log.sequence(batch=self.slice_rows, checkpoint=sign)
            total += moved
            if sign:
                self._signed_at, self._unsigned = loop.time(), False
            elif moved:
                self._unsigned = True
            # A short batch read every row committed before this pass began (SQLite: under
            # the write lock; PostgreSQL: the statement's snapshot); later commits of this
            # process wake the task again, other processes' are found by the poll.
            if moved < self.slice_rows:
                return total
            await asyncio.sleep(0)  # requests waiting for the loop (or the writer) go first

    def _timeout(self, backoff: float) -> float:
        if not self._unsigned:
            return backoff
        due = self._signed_at + self.checkpoint_seconds - asyncio.get_running_loop().time()
        return max(0.0, min(backoff, due))

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self.leadership is not None:
                await self.leadership.release()

    async def _run(self) -> None:
        backoff = self.interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._timeout(backoff))
            if self._wake.is_set() and self.gather_seconds > 0 and not self._stopping:
                await asyncio.sleep(self.gather_seconds)
            self._wake.clear()
            if self._stopping:
                return
            try:
                if self.leadership is not None and not await self.leadership.held():
                    continue  # another process sequences (its passes take our rows too)
                await asyncio.shield(self._next_pass(sign=False))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sequencing failed; will retry", error=str(exc))
                self.on_status(False, f"sequencing failed: {exc.__class__.__name__}")
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = self.interval
            self.on_status(True, "log up to date")
