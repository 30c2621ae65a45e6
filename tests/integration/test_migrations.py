"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.db import Database
from provisioning.schema import metadata


async def test_migrated_schema_matches_the_metadata(database_url: str) -> None:
    db = Database(database_url)
    try:
        await db.migrate()
        await db.migrate()  # a second run is a no-op
        async with db.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await db.dispose()
    assert diff == []
