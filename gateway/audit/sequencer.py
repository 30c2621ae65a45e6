"""Background task that moves committed events from the outbox into the Merkle log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from gateway.audit.log import AuditLog

log = structlog.get_logger("vpngw.sequencer")


class Sequencer:
    """Woken after every commit that wrote events; also polls, for other processes' commits.

    Passes of the background task sign a checkpoint at most every `checkpoint_seconds`
    (signing on every small pass was a large part of its cost under a stream of
    commits); a head it moved unsigned is signed at the latest that long after the last
    checkpoint (the task wakes for it), and every poll signs a head another process left
    unsigned once that time has passed. drain() always ends with the head signed.
    """

    def __init__(self, *, log: AuditLog, batch: int, interval: float,
                 checkpoint_seconds: float = 0.5) -> None:
        self.log = log
        self.batch = batch
        self.interval = interval
        self.checkpoint_seconds = checkpoint_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._signed_at = float("-inf")  # loop time of this process's last signing pass
        self._unsigned = False  # this process moved the head since it last signed
        self.on_status: Callable[[bool, str], None] = lambda ok, detail: None

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then return from run() (never cancel mid-transaction)."""
        self._stopping = True
        self._wake.set()

    async def drain(self) -> int:
        """Sequence everything committed before the call, sign the head; return the count."""
        return await self._passes(sign_always=True)

    async def _passes(self, *, sign_always: bool) -> int:
        loop = asyncio.get_running_loop()
        total = 0
        while True:
            sign = sign_always or loop.time() - self._signed_at >= self.checkpoint_seconds
            moved = await self.log.sequence(batch=self.batch, checkpoint=sign)
            total += moved
            if sign:
                self._signed_at, self._unsigned = loop.time(), False
            elif moved:
                self._unsigned = True
            # A short batch read every row committed before this pass began (SQLite: under
            # the write lock; PostgreSQL: the statement's snapshot); later commits of this
            # process wake the task again, other processes' are found by the poll.
            if moved < self.batch:
                return total

    def _timeout(self, backoff: float) -> float:
        if not self._unsigned:
            return backoff
        due = self._signed_at + self.checkpoint_seconds - asyncio.get_running_loop().time()
        return max(0.0, min(backoff, due))

    async def run(self) -> None:
        backoff = self.interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._timeout(backoff))
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self._passes(sign_always=False)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sequencing failed; will retry", error=str(exc))
                self.on_status(False, f"sequencing failed: {exc.__class__.__name__}")
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = self.interval
            self.on_status(True, "log up to date")
