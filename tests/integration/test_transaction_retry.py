"""A transaction PostgreSQL refuses (deadlock, serialisation failure) is run again, boundedly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.schema import outbox
from gateway.commands import TRANSACTION_ATTEMPTS, Commands
from gateway.db import Database
from gateway.settings import Settings
from provisioning.events import Event, Outcome
from tests.conftest import FakeClock


class _DriverError(Exception):
    """What the asyncpg adapter raises: an error carrying PostgreSQL's SQLSTATE."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def failing(times: int, sqlstate: str) -> Callable[[AsyncConnection], Any]:
    calls = {"n": 0}

    async def step(conn: AsyncConnection) -> Outcome[int]:
        calls["n"] += 1
        if calls["n"] <= times:
            raise DBAPIError("UPDATE peers ...", {}, _DriverError(sqlstate))
        return Outcome(calls["n"], (Event("tenant.created", {"tenant_id": "t"}),))

    return step


@pytest.fixture
async def commands(make_settings: Any, tmp_path: Any) -> Any:
    settings: Settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}")
    db = Database(settings.database_url)
    await db.migrate()
    yield Commands(db=db, clock=FakeClock(), settings=settings)
    await db.dispose()


async def outbox_size(commands: Commands) -> int:
    async with commands.db.read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
async def test_deadlock_or_serialisation_failure_is_retried(
    commands: Commands, sqlstate: str
) -> None:
    assert await commands._run(failing(TRANSACTION_ATTEMPTS - 1, sqlstate)) == TRANSACTION_ATTEMPTS
    assert await outbox_size(commands) == 1  # the failed tries left nothing behind


async def test_retries_are_bounded(commands: Commands) -> None:
    with pytest.raises(DBAPIError):
        await commands._run(failing(TRANSACTION_ATTEMPTS, "40P01"))
    assert await outbox_size(commands) == 0


async def test_other_database_errors_are_not_retried(commands: Commands) -> None:
    step = failing(1, "23505")  # a unique violation is an answer, not bad luck
    with pytest.raises(DBAPIError):
        await commands._run(step)
    assert await commands._run(step) == 2
