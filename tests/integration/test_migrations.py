"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from gateway.db import Database, alembic_config
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


async def test_peer_counter_migration_counts_each_tenants_active_peers(database_url: str) -> None:
    """0010 adds tenants.active_peers and fills it from the peers already there."""
    db = Database(database_url)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0007"))
            for tenant, statuses in (("t-many", ("active", "active", "revoked", "expired")),
                                     ("t-none", ("revoked",)), ("t-empty", ())):
                await conn.execute(text(
                    "INSERT INTO tenants (id, legal_name, registration_number, tax_id, country, "
                    "contact_email, max_peers, status, created_at, updated_at) VALUES "
                    "(:id, 'L', :id, 'T', 'PK', 'a@b.example', 10, 'verified', :now, :now)"
                ), {"id": tenant, "now": now})
                for n, status in enumerate(statuses):
                    await conn.execute(text(
                        "INSERT INTO peers (id, tenant_id, name, public_key, status, created_at) "
                        "VALUES (:id, :tenant, 'p', :key, :status, :now)"
                    ), {"id": f"{tenant}-{n}", "tenant": tenant, "key": f"{tenant}-{n}",
                        "status": status, "now": now})
        await db.migrate()
        async with db.engine.connect() as conn:
            counts = dict((await conn.execute(
                text("SELECT id, active_peers FROM tenants"))).all())
    finally:
        await db.dispose()
    assert counts == {"t-many": 2, "t-none": 0, "t-empty": 0}
