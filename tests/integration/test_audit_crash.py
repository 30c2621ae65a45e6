"""A sequencer killed with SIGKILL at random moments loses nothing and duplicates nothing.

The test process commits events to the outbox without pause and records each batch as
acknowledged once its commit returns. Meanwhile a separate process runs the service's
sequencer (AuditLog + Sequencer + the regulator index, as create_app wires them) on the
same database and is killed with SIGKILL mid-work, several times, then restarted. After a
final drain the log must verify, and every acknowledged event must be in it exactly once
(outbox and log together), its derived index row too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.audit.canonical import format_time
from gateway.audit.log import AuditLog
from gateway.audit.note import Ed25519NoteSigner
from gateway.audit.schema import endpoint_intervals, log_entries, outbox
from gateway.audit.sequencer import Sequencer
from gateway.audit.verify import verify_log
from gateway.cli import write_config
from gateway.clock import SystemClock
from gateway.commands import Commands
from gateway.db import Database
from gateway.keyfiles import load_keys
from gateway.regulator.index import index_entries
from gateway.settings import Settings
from provisioning.events import Event

KILLS = 3

CHILD = """
import asyncio, sys
from gateway.audit.log import AuditLog
from gateway.audit.note import Ed25519NoteSigner
from gateway.audit.sequencer import Sequencer
from gateway.clock import SystemClock
from gateway.db import Database
from gateway.keyfiles import load_keys
from gateway.regulator.index import index_entries
from gateway.settings import load_settings

async def main() -> None:
    settings = load_settings(sys.argv[1])
    db = Database(settings.database_url, pool_size=2)
    signer = Ed25519NoteSigner(settings.audit.origin, load_keys(settings.data_dir).log)
    log = AuditLog(db=db, signer=signer, origin=settings.audit.origin, clock=SystemClock(),
                   indexers=[index_entries])
    sequencer = Sequencer(log=log, batch=int(sys.argv[2]), interval=0.005)
    print("ready", flush=True)
    await sequencer.run()

asyncio.run(main())
"""


def session_event(n: int) -> Event:
    return Event("session.started", {
        "peer_id": f"crash-peer-{n}", "tenant_id": "crash-tenant", "gateway_id": "gw1",
        "endpoint": f"192.0.2.{n % 250}:{10000 + n}",
        "first_handshake": format_time(SystemClock().now())})


@pytest.fixture
async def prepared(settings: Settings) -> AsyncIterator[tuple[Settings, Database]]:
    write_config(settings.data_dir / "gateway.toml", {"database": {"url": settings.database_url}})
    db = Database(settings.database_url, pool_size=4)
    await db.migrate()
    yield settings, db
    await db.dispose()


async def writer(commands: Commands, acked: list[int], stop: asyncio.Event,
                 rng: random.Random) -> None:
    n = 0
    while not stop.is_set():
        size = rng.randint(1, 10)
        await commands.record([session_event(n + k) for k in range(size)])
        acked.extend(range(n, n + size))  # the commit returned: acknowledged
        n += size
        await asyncio.sleep(0.02)  # a steady stream, not a flood


ROOT = str(Path(__file__).resolve().parents[2])


async def start_sequencer(data_dir: Path, batch: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(data_dir), str(batch), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        assert (await proc.stdout.readline()).strip() == b"ready"
    return proc


async def progress_beyond(db: Database, count: int) -> None:
    async with asyncio.timeout(30):
        while True:
            async with db.read() as conn:
                if await conn.scalar(select(func.count()).select_from(log_entries)) > count:
                    return
            await asyncio.sleep(0.01)


async def test_sigkilled_sequencer_loses_and_duplicates_nothing(
    prepared: tuple[Settings, Database],
) -> None:
    settings, db = prepared
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    commands = Commands(db=db, clock=SystemClock(), settings=settings)
    acked: list[int] = []
    stop = asyncio.Event()
    writing = asyncio.create_task(writer(commands, acked, stop, rng))
    sequenced_at_kill: list[int] = []
    backlog_at_kill: list[int] = []
    try:
        for run in range(KILLS):
            proc = await start_sequencer(settings.data_dir, batch=rng.choice([7, 50, 200]))
            if run:  # the first run may die in its first batch; later ones get going first
                await progress_beyond(db, sequenced_at_kill[-1])
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            async with db.read() as conn:
                sequenced_at_kill.append(
                    await conn.scalar(select(func.count()).select_from(log_entries)))
                backlog_at_kill.append(await conn.scalar(select(func.count()).select_from(outbox)))
    finally:
        stop.set()
        await writing
    # The runs made progress (a run killed inside its first batch adds nothing), and
    # were killed with work still to do.
    assert sorted(sequenced_at_kill) == sequenced_at_kill and sequenced_at_kill[-1], seed
    assert any(backlog_at_kill), (backlog_at_kill, seed)

    # Restart: the service's sequencer finishes the job.
    signer = Ed25519NoteSigner(settings.audit.origin, load_keys(settings.data_dir).log)
    audit = AuditLog(db=db, signer=signer, origin=settings.audit.origin, clock=SystemClock(),
                     indexers=[index_entries])
    await Sequencer(log=audit, batch=500, interval=1).drain()

    report = await verify_log(db, verifier=signer.verifier, origin=settings.audit.origin)
    assert report.ok, (report.problem, seed)
    async with db.read() as conn:
        leaves = (await conn.scalars(select(log_entries.c.leaf).order_by(log_entries.c.idx))).all()
        pending = await conn.scalar(select(func.count()).select_from(outbox))
        intervals = await conn.scalar(select(func.count()).select_from(endpoint_intervals))
    logged = Counter(json.loads(leaf)["peer_id"] for leaf in leaves)
    assert pending == 0
    assert report.entries == len(leaves) == len(acked), seed
    duplicated = [peer for peer, count in logged.items() if count > 1]
    assert not duplicated, (duplicated[:5], seed)
    assert set(logged) == {f"crash-peer-{n}" for n in acked}, seed
    assert intervals == len(acked), seed  # the derived index, exactly once as well
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
