"""PostgreSQL: one process at a time runs background sequencing passes (a session advisory
lock); when it goes, another takes over. SQLite has one process and no leadership."""

from __future__ import annotations

from typing import Any, cast

import pytest

from gateway.audit.log import AuditLog
from gateway.audit.sequencer import Leadership, Sequencer
from gateway.db import Database

pytestmark = pytest.mark.postgres


async def test_one_process_leads_and_another_takes_over_when_it_goes(postgres_url: str) -> None:
    first, second = Database(postgres_url), Database(postgres_url)
    try:
        a = Leadership(first, retry_seconds=0.0)
        b = Leadership(second, retry_seconds=0.0)
        assert await a.held()
        assert not await b.held()
        assert await a.held()  # still (no new round trip needed)
        await a.release()  # the leader exits: its session, and the lock, end
        assert await b.held()
        assert not await a.held()
        await b.release()
    finally:
        await first.dispose()
        await second.dispose()


async def test_only_postgresql_sequencers_elect_a_leader(postgres_url: str, tmp_path: Any) -> None:
    class Log:
        def __init__(self, db: Database) -> None:
            self.db = db

    pg, lite = Database(postgres_url), Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        on_pg = Sequencer(log=cast(AuditLog, Log(pg)), batch=10, interval=1.0)
        on_sqlite = Sequencer(log=cast(AuditLog, Log(lite)), batch=10, interval=1.0)
        assert on_pg.leadership is not None
        assert on_sqlite.leadership is None
    finally:
        await pg.dispose()
        await lite.dispose()
