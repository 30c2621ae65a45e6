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

    Sequencing runs as one pass at a time in this process, whoever asks for it (the
    background loop, a regulator query waiting for its event, start-up, retention): a
    caller joins the next pass that has not started yet, because a pass already running
    may have read the outbox before the caller's commit. So a burst of wakes costs one
    pass, and no two passes of this process race for the log head.
    """

    def __init__(self, *, log: AuditLog, batch: int, interval: float) -> None:
        self.log = log
        self.batch = batch
        self.interval = interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._next: asyncio.Future[int] | None = None  # the pass not started yet
        self._worker: asyncio.Task[None] | None = None
        self.on_status: Callable[[bool, str], None] = lambda ok, detail: None

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then return from run() (never cancel mid-transaction)."""
        self._stopping = True
        self._wake.set()

    async def drain(self) -> int:
        """Return once a pass that started after this call has emptied the outbox of every
        event committed before it; the number of events that pass moved.

        A caller that stops waiting (a timeout, a cancelled request) leaves the pass
        running for the others.
        """
        return await asyncio.shield(self._next_pass())

    def _next_pass(self) -> asyncio.Future[int]:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._passes(), name="sequencer-pass")
        return self._next

    async def _passes(self) -> None:
        while self._next is not None:
            done, self._next = self._next, None
            try:
                moved = await self._sequence_all()
            except asyncio.CancelledError:
                done.cancel()
                raise
            except Exception as exc:
                done.set_exception(exc)
                done.exception()  # retrieved: the waiters (if any) see it when they await
            else:
                done.set_result(moved)

    async def _sequence_all(self) -> int:
        # A batch that came back short took every row visible to it: the outbox held
        # nothing more that committed before this pass started.
        total = 0
        while True:
            moved = await self.log.sequence(batch=self.batch)
            total += moved
            if moved < self.batch:
                return total

    async def run(self) -> None:
        backoff = self.interval
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sequencing failed; will retry", error=str(exc))
                self.on_status(False, f"sequencing failed: {exc.__class__.__name__}")
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = self.interval
            self.on_status(True, "log up to date")
