"""Background task that moves committed events from the outbox into the Merkle log."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from gateway.audit.log import AuditLog

log = structlog.get_logger("vpngw.sequencer")


class Sequencer:
    """Woken after every commit that wrote events; also polls, for other processes' commits."""

    def __init__(self, *, log: AuditLog, batch: int, interval: float) -> None:
        self.log = log
        self.batch = batch
        self.interval = interval
        self._wake = asyncio.Event()
        self._stopping = False
        self.on_status: Callable[[bool, str], None] = lambda ok, detail: None

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Finish the batch in hand, then return from run() (never cancel mid-transaction)."""
        self._stopping = True
        self._wake.set()

    async def drain(self) -> int:
        """Sequence until the outbox is empty; return how many events moved."""
        total = 0
        while moved := await self.log.sequence(batch=self.batch):
            total += moved
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
