"""GroupCommit with a hand-written group runner: grouping, own answers, commit failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from gateway.groupcommit import GroupCommit
from provisioning.errors import CommitFailed, QuotaExceeded


class Runner:
    """Doubles each number; refuses odd ones (only that caller); records every group."""

    def __init__(self) -> None:
        self.groups: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.fail_commit = False

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.groups.append(list(items))
        await self.release.wait()  # "the commit"
        if self.fail_commit:
            raise OSError("disk gone")
        return [QuotaExceeded(f"{i} refused") if i % 2 else i * 2 for i in items]


async def test_requests_arriving_together_share_one_group_and_get_their_own_answer() -> None:
    runner = Runner()
    batcher = GroupCommit(runner)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(6)),
                                   return_exceptions=True)
    assert runner.groups == [[0, 1, 2, 3, 4, 5]]
    assert results[0::2] == [0, 4, 8]
    assert [str(r) for r in results[1::2]] == ["1 refused", "3 refused", "5 refused"]
    assert all(isinstance(r, QuotaExceeded) for r in results[1::2])


async def test_groups_are_capped_and_later_arrivals_form_the_next_group() -> None:
    runner = Runner()
    runner.release.clear()
    batcher = GroupCommit(runner, max_items=3)
    first = [asyncio.ensure_future(batcher.submit(i)) for i in (0, 2, 4, 6)]
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(batcher.submit(i)) for i in (8, 10)]
    await asyncio.sleep(0.01)
    assert runner.groups == [[0, 2, 4]]  # the first group is still "committing"
    runner.release.set()
    assert await asyncio.gather(*first, *later) == [0, 4, 8, 12, 16, 20]
    assert runner.groups == [[0, 2, 4], [6, 8, 10]]


async def test_nobody_is_answered_before_the_commit() -> None:
    runner = Runner()
    runner.release.clear()
    batcher = GroupCommit(runner)
    pending = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3)]
    await asyncio.sleep(0.01)
    assert runner.groups == [[2, 3]]
    assert not any(p.done() for p in pending)
    runner.release.set()
    assert await pending[0] == 4
    with pytest.raises(QuotaExceeded):
        await pending[1]


async def test_a_failed_commit_fails_every_member_with_commit_failed_then_recovers() -> None:
    runner = Runner()
    runner.fail_commit = True
    batcher = GroupCommit(runner)
    results = await asyncio.gather(*(batcher.submit(i) for i in (2, 3, 4)),
                                   return_exceptions=True)
    assert all(isinstance(r, CommitFailed) for r in results)
    assert all(isinstance(r.__cause__, OSError) for r in results)
    assert len({id(r) for r in results}) == 3  # one error per caller, not one shared
    runner.fail_commit = False
    assert await batcher.submit(5 - 1) == 8


async def test_a_runner_that_answers_the_wrong_number_of_items_fails_the_group() -> None:
    async def short(items: Sequence[int]) -> list[int | BaseException]:
        return [1]

    batcher: GroupCommit[int, int] = GroupCommit(short)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, CommitFailed) for r in results)


async def test_a_caller_cancelled_before_its_group_started_is_left_out() -> None:
    runner = Runner()
    runner.release.clear()
    batcher = GroupCommit(runner)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)  # group [0] is committing
    gone = asyncio.ensure_future(batcher.submit(2))
    kept = asyncio.ensure_future(batcher.submit(4))
    await asyncio.sleep(0)
    gone.cancel()
    runner.release.set()
    assert await first == 0 and await kept == 8
    assert runner.groups == [[0], [4]]


def test_max_items_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Runner(), max_items=0)


async def test_callers_are_cancelled_with_the_runner_never_left_hanging() -> None:
    runner = Runner()
    runner.release.clear()
    batcher = GroupCommit(runner)
    in_flight = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(batcher.submit(2))
    await asyncio.sleep(0)
    assert batcher._runner is not None
    batcher._runner.cancel()  # as at shutdown
    done, pending = await asyncio.wait({in_flight, queued}, timeout=1)
    assert not pending and all(f.cancelled() for f in done)
    runner.release.set()
    assert await batcher.submit(4) == 8  # a fresh runner afterwards
