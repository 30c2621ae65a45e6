"""The sequencer signs checkpoints on a cadence, not on every pass (SQLite, PostgreSQL).

A stream of commits is sequenced by the background task; with a long cadence the head
moves past the last checkpoint, a drain signs it; with a short one the task signs the
head by itself, without being asked; with 0 every pass signs, as before. Every
checkpoint stored verifies and is a prefix of the one history.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from sqlalchemy import func, select

from gateway.audit import merkle
from gateway.audit.log import AuditLog
from gateway.audit.note import Ed25519NoteSigner
from gateway.audit.schema import checkpoints, log_entries
from gateway.audit.sequencer import Sequencer
from gateway.audit.verify import verify_log
from gateway.clock import SystemClock
from gateway.commands import Commands
from gateway.db import Database
from gateway.keyfiles import load_keys
from gateway.settings import Settings
from provisioning.events import Event

COMMITS = 12


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database.for_data_dir(settings.database_url, settings.data_dir, pool_size=4)
    await database.migrate()
    yield database
    await database.dispose()


def audit_log(settings: Settings, db: Database) -> AuditLog:
    signer = Ed25519NoteSigner(settings.audit.origin, load_keys(settings.data_dir).log)
    return AuditLog(db=db, signer=signer, origin=settings.audit.origin, clock=SystemClock())


def event(n: int) -> Event:
    return Event("session.started", {"peer_id": f"cadence-peer-{n}", "tenant_id": "t",
                                     "gateway_id": "gw1", "endpoint": f"203.0.113.7:{n + 1024}",
                                     "first_handshake": "2026-11-30T03:00:00Z"})


async def stream(settings: Settings, db: Database, sequencer: Sequencer) -> int:
    """COMMITS small commits, each waking the running sequencer; the events committed."""
    commands = Commands(db=db, clock=SystemClock(), settings=settings, on_commit=sequencer.wake)
    for n in range(COMMITS):
        await commands.record([event(n * 3 + k) for k in range(3)])
        await asyncio.sleep(0.01)
    return COMMITS * 3


async def sequenced(db: Database) -> int:
    async with db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(log_entries)) or 0)


async def signed_sizes(db: Database) -> list[int]:
    async with db.read() as conn:
        return list((await conn.scalars(select(checkpoints.c.size)
                                        .order_by(checkpoints.c.size))).all())


async def until(predicate: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(1000):  # 20 s
        if await predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the sequencer did not get there in 20 s")


async def check_history(settings: Settings, db: Database, log: AuditLog) -> None:
    report = await verify_log(db, verifier=log.signer.verifier, origin=settings.audit.origin)
    assert report.ok, report.problem
    size = await log.size()
    hashes = [e.leaf_hash for e in await log.entries(list(range(size)))]
    async with db.read() as conn:
        rows = (await conn.execute(select(checkpoints.c.size, checkpoints.c.root))).all()
    for row in rows:
        assert merkle.root_from_leaf_hashes(hashes[:row.size]) == bytes(row.root)


async def run_stream(settings: Settings, db: Database, sequencer: Sequencer) -> int:
    task = asyncio.create_task(sequencer.run())
    try:
        written = await stream(settings, db, sequencer)
        await until(lambda: _at_least(db, written))
    finally:
        sequencer.stop()
        await task
    return written


async def _at_least(db: Database, count: int) -> bool:
    return await sequenced(db) >= count


async def test_a_long_cadence_leaves_the_head_unsigned_until_a_drain(
    settings: Settings, db: Database
) -> None:
    log = audit_log(settings, db)
    sequencer = Sequencer(log=log, batch=1000, interval=0.05, checkpoint_seconds=3600)
    # The first pass signs (nothing was signed yet); passes within the hour after do not.
    task = asyncio.create_task(sequencer.run())
    try:
        commands = Commands(db=db, clock=SystemClock(), settings=settings,
                            on_commit=sequencer.wake)
        await commands.record([event(0)])
        await until(lambda: _at_least(db, 1))
        await until(lambda: _signed(db, 1))
        for n in range(1, 6):
            await commands.record([event(n)])
        await until(lambda: _at_least(db, 6))
        assert await signed_sizes(db) == [1]  # moved five times since, signed once
    finally:
        sequencer.stop()
        await task
    await sequencer.drain()
    assert await signed_sizes(db) == [1, 6] and await log.size() == 6
    await check_history(settings, db, log)


async def _signed(db: Database, size: int) -> bool:
    return size in await signed_sizes(db)


async def test_the_task_signs_the_head_by_itself_within_the_cadence(
    settings: Settings, db: Database
) -> None:
    log = audit_log(settings, db)
    sequencer = Sequencer(log=log, batch=1000, interval=3600, checkpoint_seconds=0.3)
    task = asyncio.create_task(sequencer.run())
    try:
        written = await stream(settings, db, sequencer)
        await until(lambda: _at_least(db, written))
        # No drain, no commit, and no poll within the hour: only the cadence signs it.
        await until(lambda: _signed(db, written))
    finally:
        sequencer.stop()
        await task
    await check_history(settings, db, log)


async def test_a_zero_cadence_signs_every_pass(settings: Settings, db: Database) -> None:
    log = audit_log(settings, db)
    sequencer = Sequencer(log=log, batch=2, interval=0.05, checkpoint_seconds=0.0)
    written = await run_stream(settings, db, sequencer)
    sizes = await signed_sizes(db)
    assert sizes[-1] == written
    # Batches of 2 from commits of 3: every pass signed, so no two signed sizes are
    # more than one batch apart.
    assert all(b - a <= 2 for a, b in zip([0, *sizes], sizes, strict=False))
    await check_history(settings, db, log)
