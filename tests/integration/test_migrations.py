"""The migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from gateway.audit.log import AuditLog
from gateway.audit.note import Ed25519NoteSigner
from gateway.audit.outbox import append_events
from gateway.audit.verify import verify_log
from gateway.db import Database, alembic_config
from gateway.keyfiles import load_keys
from gateway.settings import Settings
from provisioning.events import Event
from provisioning.schema import metadata
from tests.conftest import FakeClock


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


async def test_log_rowid_keys_migration_keeps_every_row_and_the_log_verifies(
    settings: Settings, clock: FakeClock
) -> None:
    """0013 rebuilds the log's tables on SQLite (idx the rowid, log_nodes WITHOUT ROWID)
    and leaves them on PostgreSQL; either way every row stays and the log still verifies
    and keeps growing."""
    db = Database.for_data_dir(settings.database_url, settings.data_dir, pool_size=2)
    signer = Ed25519NoteSigner(settings.audit.origin, load_keys(settings.data_dir).log)
    audit = AuditLog(db=db, signer=signer, origin=settings.audit.origin, clock=clock)

    async def append(start: int, count: int) -> None:
        async with db.write() as conn:
            await append_events(conn, [Event("session.ended", {
                "peer_id": f"peer-{i}", "rx_bytes": i, "tx_bytes": 7,
                "endpoint": f"203.0.113.{i % 250}:51820"}) for i in range(start, start + count)],
                now=clock.now())
        while await audit.sequence(batch=7):
            pass

    async def log_rows() -> dict[str, list[Any]]:
        async with db.read() as conn:
            return {table: [tuple(r) for r in (await conn.execute(text(
                f"SELECT * FROM {table} ORDER BY {order}"))).all()]  # noqa: S608
                for table, order in (("log_entries", "idx"), ("log_nodes", "level, idx"),
                                     ("log_head", "id"), ("checkpoints", "size"))}

    async def verified() -> int:
        report = await verify_log(db, verifier=signer.verifier, origin=settings.audit.origin)
        assert report.ok, report.problem
        return report.entries

    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.upgrade(alembic_config(sync), "0011"))
        await append(0, 45)
        before = await log_rows()
        assert len(before["log_entries"]) == 45 and len(before["log_nodes"]) > 40
        await db.migrate()
        assert await log_rows() == before
        assert await verified() == 45
        if db.is_sqlite:
            async with db.read() as conn:
                entries_indexes = (await conn.execute(
                    text("PRAGMA index_list(log_entries)"))).all()
                nodes_sql = await conn.scalar(text(
                    "SELECT sql FROM sqlite_master WHERE name = 'log_nodes'"))
            assert sorted(r[1] for r in entries_indexes) == [
                "ix_log_entries_peer_ts", "ix_log_entries_tenant_ts", "ix_log_entries_ts",
                "ix_log_entries_type_ts"]  # no separate index for the key
            assert "WITHOUT ROWID" in nodes_sql
        await append(45, 20)
        assert await verified() == 65
        assert [e.index for e in await audit.entries(range(65))] == list(range(65))
    finally:
        await db.dispose()
