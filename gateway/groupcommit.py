"""Group commit: requests arriving together share one transaction, each answered after it.

A `GroupCommit` collects the items submitted while the event loop is busy with one burst
(or while the previous group is still committing), up to `max_items`, and hands them to
`run_group` at once. `run_group` runs them in one transaction and returns one result per
item, in order: a value, or the exception that refused only that item (its own work rolled
back to a savepoint). Each caller's future is resolved only after `run_group` returned,
that is after the commit. If `run_group` itself raises (the commit failed, the database
went away) every item of the group fails with `CommitFailed`: nothing of it was written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

from provisioning.errors import CommitFailed

I = TypeVar("I")  # noqa: E741
R = TypeVar("R")

log = structlog.get_logger("vpngw.groupcommit")

RunGroup = Callable[[Sequence[I]], Awaitable[Sequence[R | BaseException]]]


class GroupCommit(Generic[I, R]):
    """One group in flight at a time; items that arrive meanwhile form the next group."""

    def __init__(self, run_group: RunGroup[I, R], *, max_items: int = 64) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        self._run_group = run_group
        self._max_items = max_items
        self._waiting: list[tuple[I, asyncio.Future[R]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: I) -> R:
        """The item's own result, once the transaction holding it has committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            # One turn of the loop first: every request already read in this burst submits.
            await asyncio.sleep(0)
            while self._waiting:
                group = self._waiting[: self._max_items]
                del self._waiting[: self._max_items]
                # A caller cancelled before its group started gets nothing done for it.
                group = [(item, future) for item, future in group if not future.done()]
                if group:
                    try:
                        await self._commit(group)
                    except asyncio.CancelledError:  # shutting down: nobody is left waiting
                        _cancel(group)
                        raise
        except asyncio.CancelledError:
            _cancel(self._waiting)
            self._waiting.clear()
            raise
        finally:
            self._runner = None

    async def _commit(self, group: list[tuple[I, asyncio.Future[R]]]) -> None:
        try:
            results = await self._run_group([item for item, _ in group])
            if len(results) != len(group):
                raise RuntimeError(f"{len(results)} results for a group of {len(group)}")
        except Exception as exc:
            log.error("group commit failed", items=len(group), error=repr(exc))
            results = [_commit_failed(exc) for _ in group]
        for (_, future), result in zip(group, results, strict=True):
            if future.done():  # the caller went away (e.g. the client disconnected)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


def _commit_failed(cause: Exception) -> CommitFailed:
    failed = CommitFailed(
        "the database did not commit this request, so nothing of it was stored; retry it"
    )
    failed.__cause__ = cause
    return failed


def _cancel(members: list[tuple[I, asyncio.Future[R]]]) -> None:
    for _, future in members:
        future.cancel()
