"""Database engines and transactions: SQLite (WAL, one writer) or PostgreSQL, plus migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

import gateway.audit.schema  # noqa: F401  (registers the audit tables on the metadata)

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """Hands out read and write transactions; writes on SQLite go through one connection."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._writer = create_async_engine(url, pool_size=1, max_overflow=0)
            self._reader = create_async_engine(url, pool_size=pool_size, max_overflow=0)
            _configure_sqlite(self._writer, begin="BEGIN IMMEDIATE")
            _configure_sqlite(self._reader, begin="BEGIN")
        else:
            self._writer = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
            self._reader = self._writer
        # SQLite allows one writer; queueing here beats spinning on busy_timeout.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn:
            yield conn

    async def migrate(self) -> None:
        async with self._writer.begin() as conn:
            await conn.run_sync(upgrade_schema)

    async def dispose(self) -> None:
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


def _configure_sqlite(engine: AsyncEngine, *, begin: str) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit transactions are wrong for us).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a process crash; only an OS crash can lose the
        # last commits, never corrupt the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade_schema(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


def make_database(url: str, *, pool_size: int = 10) -> Database:
    return Database(url, pool_size=pool_size)


__all__ = ["Database", "NullPool", "make_database"]
