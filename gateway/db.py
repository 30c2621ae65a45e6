"""Database engines and transactions: SQLite (WAL, one writer) or PostgreSQL, plus migrations."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

import gateway.audit.schema  # (registers the audit tables on the metadata)
import gateway.regulator.refusal_windows  # noqa: F401  (registers the refusal windows)
import provisioning.accounts.schema  # noqa: F401  (registers the account tables)
from gateway.audit.payloadkeys import PayloadKeys
from gateway.audit.storage import KEYS_OPTION
from gateway.privatefiles import create_private, require_private

MIGRATIONS = Path(__file__).parent / "migrations"
_log = structlog.get_logger("vpngw.db")
_MIGRATION_LOCK = 0x7670_6777  # "vpgw": the advisory lock key held while migrating


class Database:
    """Hands out read and write transactions; writes on SQLite go through one connection.

    With `payload_keys`, log payloads are sealed at rest under them (every connection
    carries them, see gateway.audit.storage); without, they are stored as plaintext.
    """

    def __init__(
        self, url: str, *, pool_size: int = 10, payload_keys: PayloadKeys | None = None
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.payload_keys = payload_keys
        options = {} if payload_keys is None else {KEYS_OPTION: payload_keys}
        if self.is_sqlite:
            _secure_sqlite_file(url)
            # The one writer connection runs on the event loop's own thread (see
            # _InlineSQLite): writes are serialised by _write_lock anyway, so a worker
            # thread only added 3-4 thread round trips per statement (cursor, execute,
            # fetch, close) -- about 40 per provisioned peer, each 0.1-1 ms on a busy
            # machine, which capped provisioning near 100 peers/s. Readers keep
            # aiosqlite's threads so a large read never stalls the loop.
            self._writer = create_async_engine(url, pool_size=1, max_overflow=0,
                                               async_creator=_inline_connector(url),
                                               execution_options=options)
            self._reader = create_async_engine(url, pool_size=pool_size, max_overflow=0,
                                               execution_options=options)
            # A 32 MiB page cache for the single writer (SQLite's default is 2 MiB): the
            # per-request quota count scans the tenant's peer index, which outgrows 2 MiB
            # near 50,000 peers; then every count re-reads it through the OS (about 20 %
            # slower at 100,000 peers). Readers keep the default so memory does not
            # grow with the pool size.
            _configure_sqlite(self._writer, begin="BEGIN IMMEDIATE", busy_timeout_ms=0,
                              cache_kib=32768, autocheckpoint=False)
            _configure_sqlite(self._reader, begin="BEGIN")
        else:
            self._writer = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size,
                                               execution_options=options)
            self._reader = self._writer
        # SQLite allows one writer; queueing here beats spinning on busy_timeout.
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._checkpointer = _Checkpointer.for_url(url) if self.is_sqlite else None

    @classmethod
    def for_data_dir(cls, url: str, data_dir: Path, *, pool_size: int = 10) -> Database:
        """The service's database: payloads sealed under the data dir's key file (refused,
        like the keys beside it, if others can read it)."""
        keys = PayloadKeys.in_data_dir(data_dir)
        require_private(keys.path)
        return cls(url, pool_size=pool_size, payload_keys=keys)

    @property
    def engine(self) -> AsyncEngine:
        return self._writer

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self._writer.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            async with self._writer.begin() as conn:
                yield conn
            if self._checkpointer is not None:
                self._checkpointer.committed()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self._reader.connect() as conn:
            yield conn

    async def migrate(self) -> None:
        async with self._writer.begin() as conn:
            if not self.is_sqlite:
                # Processes starting together on one database migrate one after another
                # (the others then find the schema at head); SQLite's writer lock does this.
                await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            await conn.run_sync(upgrade_schema)

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
        await self._writer.dispose()
        if self._reader is not self._writer:
            await self._reader.dispose()


def _secure_sqlite_file(url: str) -> None:
    """The database holds preshared keys: create it owner-only, refuse it if exposed.

    SQLite gives the -wal and -shm files the mode of the database file, so creating the
    (empty, hence valid) database file 0600 before SQLite opens it covers all three.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    create_private(path)
    require_private(*(path.with_name(path.name + suffix) for suffix in ("", "-wal", "-shm")))


def _configure_sqlite(
    engine: AsyncEngine, *, begin: str, busy_timeout_ms: int = 10000, cache_kib: int = 0,
    autocheckpoint: bool = True,
) -> None:
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
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA secure_delete=ON")  # zero freed space: retention erases for real
        # Sorts and temporary indexes (e.g. ORDER BY id over a tenant's peers) stay in
        # memory instead of going through temporary files.
        cursor.execute("PRAGMA temp_store=MEMORY")
        if cache_kib:
            cursor.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        if not autocheckpoint:  # see _Checkpointer
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)


# --- WAL checkpoints off the event loop ---------------------------------------------------

# Commits of this process's writer between two checkpoints (a group commit of creates
# writes some 20-30 pages; SQLite's own default is one checkpoint per 1,000 pages).
CHECKPOINT_EVERY_COMMITS = 32


class _Checkpointer:
    """PASSIVE WAL checkpoints on a worker thread, every CHECKPOINT_EVERY_COMMITS commits.

    SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000
    pages, and the writer's commits run on the event loop's thread (_InlineSQLite): every
    few dozen commits the loop stopped while pages were copied into the database file and
    both files fsynced, a pause every request in flight waited for. The writer turns it
    off (wal_autocheckpoint=0) and this runs it beside the loop on a connection of its
    own instead. PASSIVE never waits for the writer or readers; what it cannot copy yet
    (a reader still needs it) is copied by a later one. Other processes (the CLI) keep
    SQLite's automatic checkpoints.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._commits = 0
        self._running: asyncio.Future[None] | None = None
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def for_url(cls, url: str) -> _Checkpointer | None:
        database = make_url(url).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return cls(database)

    def committed(self) -> None:
        self._commits += 1
        if self._commits < CHECKPOINT_EVERY_COMMITS:
            return
        if self._running is not None and not self._running.done():
            return  # the previous one is still copying: the next commit asks again
        self._commits = 0
        self._running = asyncio.get_running_loop().run_in_executor(None, self._checkpoint)
        self._running.add_done_callback(_log_checkpoint_failure)

    def _checkpoint(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, isolation_level=None,
                                         check_same_thread=False)
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        running, self._running = self._running, None
        if running is not None:
            with contextlib.suppress(Exception):
                await running
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _log_checkpoint_failure(done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        # Not fatal: the WAL only grows until a later checkpoint succeeds.
        _log.warning("WAL checkpoint failed", error=repr(done.exception()))


# --- the SQLite writer on the event loop thread ------------------------------------------

# How long BEGIN IMMEDIATE keeps retrying while another process (e.g. the CLI) holds
# SQLite's write lock: the same budget as the readers' busy_timeout.
_BUSY_BUDGET_SECONDS = 10.0


class _InlineCursor:
    """The slice of aiosqlite's Cursor that SQLAlchemy's adapter uses, run in-line."""

    __slots__ = ("_cursor",)

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> _InlineCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Any = ()) -> _InlineCursor:
        if not sql.lstrip()[:5].upper().startswith("BEGIN"):
            self._cursor.execute(sql, parameters)
            return self
        # Wait for another process's write lock without blocking the loop:
        # busy_timeout is 0 on this connection, so SQLite answers SQLITE_BUSY at once
        # and we sleep here instead of inside sqlite3_step.
        deadline = time.monotonic() + _BUSY_BUDGET_SECONDS
        delay = 0.001
        while True:
            try:
                self._cursor.execute(sql, parameters)
                return self
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    async def executemany(self, sql: str, seq: Iterable[Any]) -> _InlineCursor:
        self._cursor.executemany(sql, seq)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany() if size is None else self._cursor.fetchmany(size)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _RunNow:
    """Stands in for aiosqlite's job queue: runs the job at once and resolves its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)


class _InlineSQLite:
    """An aiosqlite-compatible connection whose calls run on the calling (loop) thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._tx = _RunNow()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError("no active connection")
        return self._connection

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (provisioning.driver runs pre-built SQL on it)."""
        return self._conn

    def cursor(self) -> _InlineCursor:
        return _InlineCursor(self._conn.cursor())

    async def execute(self, sql: str, parameters: Any = ()) -> _InlineCursor:
        return await self.cursor().execute(sql, parameters)

    async def commit(self) -> None:
        self._conn.commit()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _inline_connector(url: str) -> Callable[[], Any]:
    # The same file name and options SQLAlchemy would hand to sqlite3.connect().
    args, options = SQLiteDialect_pysqlite().create_connect_args(make_url(url))
    kwargs: dict[str, Any] = {**options, "check_same_thread": False}  # GC may close it
    connect_sqlite: Callable[..., sqlite3.Connection] = sqlite3.connect

    async def connect() -> _InlineSQLite:
        return _InlineSQLite(connect_sqlite(*args, **kwargs))

    return connect


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade_schema(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
