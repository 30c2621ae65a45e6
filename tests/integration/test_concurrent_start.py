"""Several processes starting at once on one fresh database: all come up, one schema, one pool."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select

from gateway.commands import Commands
from gateway.db import Database
from provisioning.schema import address_pools
from tests.conftest import FakeClock


async def test_concurrent_starts_on_one_fresh_database(
    make_settings: Any, database_url: str
) -> None:
    settings = make_settings(database_url)
    dbs = [Database(settings.database_url) for _ in range(4)]
    try:
        async def start(db: Database) -> None:
            await db.migrate()
            await Commands(db=db, clock=FakeClock(), settings=settings).ensure_pools()

        await asyncio.gather(*(start(db) for db in dbs))
        async with dbs[0].read() as conn:
            pools = await conn.scalar(select(func.count()).select_from(address_pools))
        assert pools == len(settings.pool_networks)
    finally:
        for db in dbs:
            await db.dispose()
