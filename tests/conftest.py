"""Shared fixtures: settings in a temp data dir, SQLite and PostgreSQL databases, the app."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.keyfiles import create_keys
from gateway.settings import Settings, load_settings
from tests.components import require_or_skip

PG_ADMIN_URL = os.environ.get("VPNGW_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

# Two-person control is on by default (and `vpngw init` writes it on). Tests written
# before it perform sensitive operations directly, so it is off here, for the CLI
# subprocesses too; tests of approvals switch it on (approvals={"required": True}, or
# VPNGW_APPROVALS_REQUIRED=true in a subprocess's environment).
os.environ.setdefault("VPNGW_APPROVALS_REQUIRED", "false")


class FakeClock:
    """A settable clock for tests (the app reads time only through a Clock)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 11, 30, 3, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _pg_available() -> bool:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_available() -> bool:
    return _pg_available()


@pytest.fixture(scope="session")
def _pg_databases() -> Iterator[list[str]]:
    """Names of the per-test databases, dropped once the session ends.

    Dropping at session end (not per test) means no app teardown can ever find its
    database gone, whatever order pytest finalises async and sync fixtures in.
    """
    created: list[str] = []
    yield created
    for name in created:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def postgres_url(pg_available: bool, _pg_databases: list[str]) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    require_or_skip(pg_available, f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    name = f"vpngw_t_{secrets.token_hex(5)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    _pg_databases.append(name)
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'vpngw.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def write_settings(data_dir: Path, database_url: str | None = None, **sections: Any) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    create_keys(data_dir)
    settings = load_settings(data_dir, environ={})
    # Egress (forwarding and translation on this host) only where a test asks for it.
    changes: dict[str, Any] = {
        "network": {"endpoint": "vpn.test:51820"},
        "egress": {"enabled": False},
        "approvals": {"required": False},
        **sections,
    }
    if database_url:
        changes["database"] = {"url": database_url}
    return settings.replace(**changes)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(database_url: str | None = None, **sections: Any) -> Settings:
        return write_settings(tmp_path / "data", database_url, **sections)

    return make


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> AsyncIterator[Any]:
    from gateway.app import create_app

    app = create_app(settings)
    yield await aiohttp_client(app)
