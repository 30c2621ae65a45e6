"""The sequencer runs one pass at a time and every caller waits for a pass that started
after it asked (so it covers the caller's commits); a failure reaches every waiter."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from gateway.audit.log import AuditLog
from gateway.audit.sequencer import Sequencer


class FakeLog:
    """Stands in for AuditLog.sequence(): an outbox of `pending` rows, taken a batch at a
    time; `gate` holds a pass in the middle of its transaction while the test looks."""

    def __init__(self) -> None:
        self.pending = 0
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None
        self.signed: list[bool] = []  # each call's checkpoint flag

    async def sequence(self, *, batch: int, checkpoint: bool = True) -> int:
        self.calls += 1
        self.signed.append(checkpoint)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            visible = self.pending  # what the pass reads from the outbox, as it starts
            await self.gate.wait()
            if self.fail is not None:
                raise self.fail
            moved = min(batch, visible)
            self.pending -= moved
            return moved
        finally:
            self.running -= 1


def sequencer(log: FakeLog, batch: int = 10) -> Sequencer:
    return Sequencer(log=cast(AuditLog, log), batch=batch, interval=60.0)


async def test_callers_that_ask_together_share_one_pass() -> None:
    log = FakeLog()
    log.pending = 3
    seq = sequencer(log)
    moved = await asyncio.gather(*(seq.drain() for _ in range(5)))
    assert moved == [3] * 5
    assert log.calls == 1  # a short batch ends the pass: no extra empty transaction
    assert log.signed == [True]  # a drain always ends with the head signed


async def test_a_caller_arriving_during_a_pass_waits_for_the_next_one() -> None:
    log = FakeLog()
    seq = sequencer(log)
    log.gate.clear()
    first = asyncio.ensure_future(seq.drain())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log.running == 1  # the first pass has read the outbox (before the commit below)
    log.pending = 2  # a commit that pass cannot have seen
    second = asyncio.ensure_future(seq.drain())
    third = asyncio.ensure_future(seq.drain())
    log.gate.set()
    assert await first == 0
    assert await second == 2 and await third == 2  # one more pass, shared
    assert log.calls == 2 and log.most_running == 1
    assert log.pending == 0


async def test_a_pass_runs_batches_until_one_comes_back_short() -> None:
    log = FakeLog()
    log.pending = 25
    seq = sequencer(log, batch=10)
    assert await seq.drain() == 25
    assert log.calls == 3


async def test_a_waiter_that_gives_up_leaves_the_pass_running() -> None:
    log = FakeLog()
    log.pending = 1
    seq = sequencer(log)
    log.gate.clear()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await seq.drain()
    assert log.running == 1
    log.gate.set()
    await asyncio.sleep(0.01)
    assert log.pending == 0


async def test_a_failing_pass_fails_its_waiters_and_the_next_pass_runs_afresh() -> None:
    log = FakeLog()
    log.pending = 1
    log.fail = RuntimeError("log storage offline")
    seq = sequencer(log)
    results: list[Any] = await asyncio.gather(seq.drain(), seq.drain(), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    log.fail = None
    assert await seq.drain() == 1



async def test_a_backlog_moves_in_slices_and_requests_run_between_them() -> None:
    log = FakeLog()
    log.pending = 25
    seq = Sequencer(log=cast(AuditLog, log), batch=5000, interval=60.0, slice_rows=10)
    ran_between: list[int] = []

    async def request() -> None:  # a request's turn of the loop while the pass runs
        while log.pending:
            ran_between.append(log.calls)
            await asyncio.sleep(0)

    moved, _ = await asyncio.gather(seq.drain(), request())
    assert moved == 25
    assert log.calls == 3  # 10 + 10 + 5: each slice its own transaction
    assert {1, 2} <= set(ran_between)  # the loop was free after the first and second slice


def test_a_slice_is_never_larger_than_the_batch() -> None:
    seq = Sequencer(log=cast(AuditLog, FakeLog()), batch=4, interval=60.0, slice_rows=256)
    assert seq.slice_rows == 4
