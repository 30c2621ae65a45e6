"""provisioning.driver: pre-built SQL text on the driver connection, inside the caller's
SQLAlchemy transaction, with the driver's errors as SQLAlchemy's (so a refused bulk write
rolls back to its savepoint and the group goes one by one, as before)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from gateway.db import Database
from provisioning.driver import Driver
from provisioning.schema import UTCDateTime, address_pools


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.migrate()
    yield database
    await database.dispose()


async def test_statements_run_in_the_callers_transaction(db: Database) -> None:
    async with db.write() as conn:
        raw = await Driver.of(conn)
        await raw.executemany("INSERT INTO address_pools (cidr, next_offset) VALUES (?, ?)",
                              [("10.9.0.0/24", 2), ("10.9.1.0/24", 2)])
        which, params = raw.in_list("cidr", ["10.9.0.0/24", "10.9.1.0/24"])
        end = await raw.fetchval(
            "UPDATE address_pools SET next_offset = next_offset + ? WHERE cidr = ?"
            " RETURNING next_offset", (5, "10.9.0.0/24"))
        assert end == 7
        rows = await raw.fetch(
            f"SELECT cidr, next_offset FROM address_pools WHERE {which} ORDER BY cidr",  # noqa: S608
            params)
        assert [tuple(r) for r in rows] == [("10.9.0.0/24", 7), ("10.9.1.0/24", 2)]
        # SQLAlchemy on the same connection sees it: one transaction.
        assert await conn.scalar(select(address_pools.c.next_offset)
                                 .where(address_pools.c.cidr == "10.9.0.0/24")) == 7
        await conn.rollback()
    async with db.read() as conn:
        assert await conn.scalar(select(address_pools.c.cidr)
                                 .where(address_pools.c.cidr == "10.9.0.0/24")) is None


async def test_a_constraint_is_an_integrity_error_and_a_savepoint_undoes_it(db: Database) -> None:
    async with db.write() as conn:
        raw = await Driver.of(conn)
        await raw.executemany("INSERT INTO address_pools (cidr, next_offset) VALUES (?, ?)",
                              [("10.8.0.0/24", 2)])
        with pytest.raises(IntegrityError):
            async with conn.begin_nested():
                await raw.executemany(
                    "INSERT INTO address_pools (cidr, next_offset) VALUES (?, ?)",
                    [("10.8.1.0/24", 2), ("10.8.0.0/24", 3)])
        # The transaction goes on without the refused rows.
        await raw.executemany("INSERT INTO address_pools (cidr, next_offset) VALUES (?, ?)",
                              [("10.8.2.0/24", 2)])
    async with db.read() as conn:
        cidrs = set((await conn.scalars(select(address_pools.c.cidr)
                                        .where(address_pools.c.cidr.like("10.8.%")))).all())
    assert cidrs == {"10.8.0.0/24", "10.8.2.0/24"}


@pytest.mark.parametrize("when", [
    datetime(2026, 11, 30, 16, 40, 8, 123456, tzinfo=UTC),
    datetime(2026, 11, 30, 21, 40, 8, tzinfo=timezone(timedelta(hours=5))),
])
def test_sqlite_times_are_bound_as_sqlalchemy_binds_them(when: datetime) -> None:
    dialect = sqlite.dialect()
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert bind is not None

    class SQLiteOnly(Driver):
        def __init__(self) -> None:
            self.postgres = False

    assert SQLiteOnly().time(when) == bind(when)
    assert SQLiteOnly().time(None) is None
