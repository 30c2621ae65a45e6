"""The bearer-token cache: requests that miss together share one database read."""

from __future__ import annotations

import asyncio

import pytest

from gateway.http.auth import _TokenCache
from provisioning.tokens import Principal, Role

DIGEST = b"d" * 32


def principal() -> Principal:
    return Principal(token_id="t1", role=Role.TENANT, tenant_id="tenant-1")


class SlowRead:
    """A token read that waits for `release`; counts how often it ran."""

    def __init__(self, result: Principal | Exception | None) -> None:
        self.result = result
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> Principal | None:
        self.calls += 1
        await self.release.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


async def test_concurrent_misses_share_one_read_and_remember_it() -> None:
    cache, read = _TokenCache(), SlowRead(principal())
    waiters = [asyncio.ensure_future(cache.look_up(DIGEST, read)) for _ in range(32)]
    await asyncio.sleep(0)
    read.release.set()
    assert await asyncio.gather(*waiters) == [principal()] * 32
    assert read.calls == 1
    assert cache.get(DIGEST, 0.0) == principal()


async def test_an_unknown_token_is_not_remembered() -> None:
    cache, read = _TokenCache(), SlowRead(None)
    read.release.set()
    assert await cache.look_up(DIGEST, read) is None
    assert cache.get(DIGEST, 0.0) is None


async def test_a_failed_read_fails_every_waiter_and_the_next_miss_reads_again() -> None:
    cache, failing = _TokenCache(), SlowRead(RuntimeError("database went away"))
    waiters = [asyncio.ensure_future(cache.look_up(DIGEST, failing)) for _ in range(3)]
    await asyncio.sleep(0)
    failing.release.set()
    for outcome in await asyncio.gather(*waiters, return_exceptions=True):
        assert isinstance(outcome, RuntimeError)
    good = SlowRead(principal())
    good.release.set()
    assert await cache.look_up(DIGEST, good) == principal()
    assert good.calls == 1


async def test_a_caller_that_goes_away_leaves_the_read_to_the_others() -> None:
    cache, read = _TokenCache(), SlowRead(principal())
    leaving = asyncio.ensure_future(cache.look_up(DIGEST, read))
    staying = asyncio.ensure_future(cache.look_up(DIGEST, read))
    await asyncio.sleep(0)
    leaving.cancel()
    read.release.set()
    assert await staying == principal()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert read.calls == 1


async def test_a_read_that_began_before_a_clear_is_not_remembered() -> None:
    cache, read = _TokenCache(), SlowRead(principal())
    waiter = asyncio.ensure_future(cache.look_up(DIGEST, read))
    await asyncio.sleep(0)
    cache.clear()  # e.g. an ops request that may revoke tokens
    read.release.set()
    assert await waiter == principal()
    assert cache.get(DIGEST, 0.0) is None
