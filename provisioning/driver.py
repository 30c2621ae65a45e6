"""Pre-built SQL text run straight on the driver connection of a SQLAlchemy transaction.

SQLAlchemy Core compiles (or looks up) each statement, builds its parameters and wraps
the result for every call; on the group-commit path of `POST /v1/peers` (a dozen
statements per group) that cost more than the database's own work. The statements
here are plain text written once with ``?`` placeholders (renumbered for asyncpg), and
run in the caller's transaction: the SQLite writer's sqlite3 connection directly (it
runs on the event loop's thread, see gateway.db), asyncpg's connection on PostgreSQL.

Driver errors come back as SQLAlchemy's (IntegrityError for a constraint, DBAPIError
otherwise, the driver's own as `.orig`), so callers and the transaction retry treat
them as before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.sqltext import numbered


def placeholders(n: int) -> str:
    return ",".join("?" * n)


class Driver:
    """The driver connection of `conn`'s transaction; get one with `await Driver.of(conn)`."""

    __slots__ = ("_asyncpg", "_conn", "_sqlite", "postgres")

    def __init__(self, conn: AsyncConnection, driver: Any) -> None:
        self._conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        sqlite = getattr(driver, "sqlite", None)
        self._sqlite: sqlite3.Connection | None = (
            sqlite if isinstance(sqlite, sqlite3.Connection) else None)
        self._asyncpg: Any = driver if self.postgres else None

    @classmethod
    async def of(cls, conn: AsyncConnection) -> Driver:
        raw = await conn.get_raw_connection()
        adapted: Any = raw.dbapi_connection
        if (conn.dialect.name == "postgresql" and getattr(adapted, "_transaction", True) is None
                and getattr(adapted, "isolation_level", None) != "autocommit"):
            # SQLAlchemy's asyncpg adapter sends BEGIN with its first statement: have it
            # do so now, so that what runs here is inside the caller's transaction.
            await conn.exec_driver_sql("SELECT 1")
        return cls(conn, raw.driver_connection)

    def time(self, value: datetime | None) -> Any:
        """A UTC column's value as provisioning.schema.UTCDateTime binds it."""
        if value is None or self.postgres:
            return value
        # SQLAlchemy's SQLite DATETIME storage format, naive UTC.
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def from_time(self, value: Any) -> datetime | None:
        """A UTC column's value as read on the driver, as UTCDateTime returns it."""
        if value is None:
            return None
        if isinstance(value, str):  # SQLite's text
            value = datetime.fromisoformat(value)
        when: datetime = value
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        try:
            if self._sqlite is not None:
                return self._sqlite.execute(sql, params).fetchall()
            if self._asyncpg is not None:
                return list(await self._asyncpg.fetch(numbered(sql), *params))
        except Exception as exc:
            raise _as_sqlalchemy(exc, sql, params) from exc
        return list((await self._conn.exec_driver_sql(sql, tuple(params))).all())

    def in_list(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """`column` is one of `values`: one array parameter on PostgreSQL (one prepared
        statement whatever the count), a placeholder each on SQLite."""
        if self.postgres:
            return f"{column} = ANY(?)", [list(values)]
        return f"{column} IN ({placeholders(len(values))})", list(values)

    async def fetchval(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.fetch(sql, params)
        return rows[0][0] if rows else None

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            if self._sqlite is not None:
                self._sqlite.executemany(sql, rows)
                return
            if self._asyncpg is not None:
                if len(rows) == 1:
                    await self._asyncpg.execute(numbered(sql), *rows[0])
                else:
                    await self._asyncpg.executemany(numbered(sql), rows)
                return
        except Exception as exc:
            raise _as_sqlalchemy(exc, sql, rows) from exc
        await self._conn.exec_driver_sql(sql, [tuple(r) for r in rows])


def _as_sqlalchemy(exc: Exception, sql: str, params: Any) -> Exception:
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if isinstance(exc, sqlite3.IntegrityError) or sqlstate.startswith("23"):
        return IntegrityError(sql, params, exc)
    if isinstance(exc, sqlite3.Error) or hasattr(exc, "sqlstate"):
        return DBAPIError(sql, params, exc)
    return exc
