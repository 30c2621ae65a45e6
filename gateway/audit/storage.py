"""How the log's rows are stored: dialect SQL on the raw driver, and payloads sealed at rest.

Everything that knows SQLite from PostgreSQL for the log, or that a payload is stored
sealed (gateway.audit.payloadkeys), is here; the rest of the code reads and writes plain
canonical leaves through these functions.

The hot paths (sequencing thousands of rows, proofs on every regulator answer, verify)
bypass SQLAlchemy's per-row parameter processing and statement compilation: rows go to
the driver's executemany as tuples, and reads run as one driver call (on SQLite readers
one aiosqlite thread hop instead of four). Statements are written with ``?`` placeholders.

A database opened with payload keys (``Database(..., payload_keys=...)``) carries them as
an execution option of its engines, so any connection it hands out can seal and open
payloads. Opened without, payloads are written as plaintext (tests and tools that build
a bare log); plaintext rows stay readable either way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.canonical import parse_time
from gateway.audit.payloadkeys import (
    SEALED_HEADER_SIZE,
    PayloadKeys,
    SealedPayloadError,
    day_of,
    day_start,
    is_sealed,
    open_rows,
    seal_many,
    sealed_day,
    unseal,
    unseal_many,
)
from gateway.audit.sqltext import numbered

if TYPE_CHECKING:
    from gateway.db import Database

log = structlog.get_logger("vpngw.audit.storage")

KEYS_OPTION = "vpngw_payload_keys"
PARAMS_PER_QUERY = 30_000  # under SQLite's and PostgreSQL's 32,766 / 32,767 limits


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


# --- dialect SQL on the raw driver ---------------------------------------------------------


def dialect_sql(conn: AsyncConnection, sql: str) -> str:
    if conn.dialect.name != "postgresql":
        return sql
    return numbered(sql)


def placeholders(n: int) -> str:
    return ",".join("?" * n)


async def fetch(conn: AsyncConnection, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql":
        return list(await driver.fetch(numbered(sql), *params))
    fetch_all = getattr(driver, "execute_fetchall", None)  # aiosqlite: one thread hop
    if fetch_all is not None:
        return list(await fetch_all(sql, tuple(params)))
    inline = getattr(driver, "sqlite", None)  # the writer, in the caller's transaction
    if inline is not None:  # no SQLAlchemy cursor and result rows around a plain query
        return list(inline.execute(sql, tuple(params)).fetchall())
    return list((await conn.exec_driver_sql(sql, tuple(params))).all())


async def executemany(conn: AsyncConnection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    await conn.exec_driver_sql(dialect_sql(conn, sql), rows)


class TimeColumns:
    """RFC 3339 leaf times to ``ts`` column values for the driver, parsed (and validated)
    once per distinct second."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.sqlite = conn.dialect.name == "sqlite"
        self.parsed: dict[str, datetime] = {}
        self.stored: dict[str, Any] = {}
        self.by_time: dict[datetime, str] = {}

    def parse(self, text: str) -> datetime:
        when = self.parsed.get(text)
        if when is None:
            when = self.parsed[text] = parse_time(text)
        return when

    def column(self, text: str) -> Any:
        value = self.stored.get(text)
        if value is None:
            value = self.stored[text] = self.value(self.parse(text))
        return value

    def value(self, when: datetime) -> Any:
        """How UTCDateTime stores an aware time: SQLite text in UTC without a zone
        (SQLAlchemy's format, so comparisons stay consistent), a timestamptz else."""
        if when.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if not self.sqlite:
            return when
        text = self.by_time.get(when)
        if text is None:
            text = self.by_time[when] = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return text


async def delete_outbox(conn: AsyncConnection, ids: list[int]) -> None:
    """Delete exactly the outbox rows read (ids ascending)."""
    # On PostgreSQL a lower id can commit later, and a range delete would drop that event
    # without sequencing it. On SQLite the range is exact: the sequencing transaction
    # holds the only write lock, so every row up to the last id read was read.
    if conn.dialect.name == "postgresql":
        await conn.exec_driver_sql("DELETE FROM outbox WHERE id = ANY($1::integer[])", (ids,))
    else:
        await conn.exec_driver_sql("DELETE FROM outbox WHERE id <= ?", (ids[-1],))


# --- payloads --------------------------------------------------------------------------------


def keys_of(conn: AsyncConnection) -> PayloadKeys | None:
    """The payload keys of the database the connection came from (None: plaintext)."""
    if conn.sync_connection is None:
        return None
    keys: PayloadKeys | None = conn.sync_connection.get_execution_options().get(KEYS_OPTION)
    return keys


def seal_leaves(
    conn: AsyncConnection, leaves: Sequence[bytes], *, ts: datetime
) -> list[tuple[bytes, bytes]]:
    """(stored bytes, leaf hash) of each leaf whose ``ts`` is `ts`, sealed if keys are set."""
    hashes = [leaf_hash(leaf) for leaf in leaves]
    keys = keys_of(conn)
    if keys is None:
        return list(zip(leaves, hashes, strict=True))
    day = day_of(ts)
    sealed = seal_many(keys.for_sealing(day), day, leaves, hashes)
    return list(zip(sealed, hashes, strict=True))


class Opener:
    """Opens stored payloads with one connection's keys: the plain leaf, or None if erased."""

    def __init__(self, keys: PayloadKeys | None) -> None:
        self.keys = keys

    @classmethod
    def of(cls, conn: AsyncConnection) -> Opener:
        return cls(keys_of(conn))

    def leaf(self, stored: bytes | None, stored_hash: bytes) -> bytes | None:
        """None when retention erased the row or deleted its day's key, or when it does
        not authenticate (an altered row: logged; `vpngw audit verify` names it)."""
        try:
            return self.strict(stored, stored_hash)
        except SealedPayloadError as exc:
            log.error("stored payload is altered; run `vpngw audit verify`", error=str(exc))
            return None

    def strict(self, stored: bytes | None, stored_hash: bytes) -> bytes | None:
        """As leaf(), but an altered sealed payload raises SealedPayloadError."""
        if stored is None:
            return None
        stored = bytes(stored)
        if not is_sealed(stored):
            if stored[:1] == b"{":  # plaintext, from before payloads were sealed
                return stored
            raise SealedPayloadError("stored payload is neither sealed nor a canonical leaf")
        if self.keys is None:
            return None
        aead = self.keys.for_opening(sealed_day(stored))
        if aead is None:
            return None
        return unseal(aead, stored, bytes(stored_hash))

    def event(self, stored: bytes | None, stored_hash: bytes) -> dict[str, Any] | None:
        leaf = self.leaf(stored, stored_hash)
        if leaf is None:
            return None
        try:
            return dict(json.loads(leaf))
        except ValueError:
            log.error("stored payload is not JSON; run `vpngw audit verify`")
            return None


@dataclass(frozen=True, slots=True)
class OutboxBatch:
    """Outbox rows in id order, column by column: the stored bytes go into the log as they
    are (sealed, never re-encrypted), the plain leaves are parsed for the row's columns."""

    ids: list[int]
    stored: list[bytes]
    leaves: list[bytes]
    hashes: list[bytes]


async def outbox_batch(conn: AsyncConnection, batch: int) -> OutboxBatch:
    """Up to `batch` outbox rows in id order, their payloads opened."""
    rows = await fetch(conn, "SELECT id, leaf, leaf_hash FROM outbox ORDER BY id LIMIT ?",
                       (batch,))
    ids = [int(r[0]) for r in rows]
    stored = [bytes(r[1]) for r in rows]
    headers = {s[:SEALED_HEADER_SIZE] for s in stored}
    if len(headers) == 1 and is_sealed(stored[0]):  # the usual batch: one day's key
        # The leaf hash is authenticated with the payload: only a key holder made the pair.
        hashes = [bytes(r[2]) for r in rows]
        aead = _opening_key(keys_of(conn), ids[0], sealed_day(stored[0]))
        return OutboxBatch(ids, stored, unseal_many(aead, stored, hashes), hashes)
    keys = keys_of(conn)
    leaves, hashes = [], []
    for row_id, data, (_, _, stored_hash) in zip(ids, stored, rows, strict=True):
        if not is_sealed(data):  # plaintext (no keys, or written before sealing existed)
            leaves.append(data)
            hashes.append(leaf_hash(data))
            continue
        aead = _opening_key(keys, row_id, sealed_day(data))
        leaves.append(unseal(aead, data, stored_hash or b""))
        hashes.append(bytes(stored_hash))
    return OutboxBatch(ids, stored, leaves, hashes)


def _opening_key(keys: PayloadKeys | None, row_id: int, day: int) -> AESGCM:
    aead = None if keys is None else keys.for_opening(day)
    if aead is None:
        raise SealedPayloadError(
            f"outbox row {row_id} is sealed under the key of {day_start(day):%Y-%m-%d}, "
            "which is missing from payload-keys.json; restore the key file from its backup")
    return aead


# --- reading the whole log (verify) -------------------------------------------------------


@asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[LogReader]:
    """A LogReader over one consistent snapshot of the log (a live sequencer cannot shift it)."""
    async with db.read() as conn:
        if not db.is_sqlite:
            await conn.execution_options(isolation_level="REPEATABLE READ")
        yield await LogReader.open(conn, postgres=not db.is_sqlite)


class LogReader:
    """Plain driver queries inside the caller's transaction (SQLAlchemy rows cost ~1 µs each).

    ``entries`` yields (idx, leaf, leaf hash) with the leaf opened: the plain leaf, None
    if erased (or its key deleted), or the stored bytes as they are if they do not
    authenticate, so the leaf-hash check reports the row as edited.
    """

    def __init__(self, driver: Any, *, postgres: bool, opener: Opener) -> None:
        self._driver = driver
        self._postgres = postgres
        self._opener = opener
        # asyncpg runs one query at a time per connection (aiosqlite queues by itself);
        # a prefetch of the next chunk overlaps hashing, not other queries.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, conn: AsyncConnection, *, postgres: bool) -> LogReader:
        # The first statement through SQLAlchemy begins the transaction (and, on SQLite,
        # takes the read snapshot) that the raw queries below then share.
        await conn.exec_driver_sql("SELECT size FROM log_head LIMIT 1")
        raw = await conn.get_raw_connection()
        return cls(raw.driver_connection, postgres=postgres, opener=Opener.of(conn))

    @property
    def postgres(self) -> bool:
        return self._postgres

    @property
    def keys(self) -> PayloadKeys | None:
        """The payload keys readers open sealed leaves with (None: plaintext only)."""
        return self._opener.keys

    async def rows(self, sql: str, *params: Any) -> list[Sequence[Any]]:
        if self._postgres:
            async with self._lock:
                return list(await self._driver.fetch(numbered(sql), *params))
        return list(await self._driver.execute_fetchall(sql, params))

    async def entries(self, start: int, limit: int) -> list[Sequence[Any]]:
        rows = await self.rows("SELECT idx, leaf, leaf_hash FROM log_entries WHERE idx >= ? "
                               "ORDER BY idx LIMIT ?", start, limit)
        return self._opened(rows)

    def _opened(self, rows: list[Sequence[Any]]) -> list[Sequence[Any]]:
        return open_rows(rows, self.keys)

    async def outbox_leaves(self) -> list[bytes]:
        """Plain leaves still in the outbox (erased ones left out)."""
        rows = await self.rows("SELECT leaf, leaf_hash FROM outbox ORDER BY id")
        leaves = (self._opener.leaf(r[0], r[1] or b"") for r in rows)
        return [leaf for leaf in leaves if leaf is not None]

    async def leaf_hashes(self, start: int, end: int, limit: int) -> list[Sequence[Any]]:
        return await self.rows("SELECT idx, leaf_hash FROM log_entries WHERE idx >= ? AND idx < ? "
                               "ORDER BY idx LIMIT ?", start, end, limit)

    async def nodes(self, ranges: Sequence[tuple[int, int, int]]) -> dict[tuple[int, int], bytes]:
        """Stored interior nodes for (level, first index, end index) ranges."""
        found: dict[tuple[int, int], bytes] = {}
        for start in range(0, len(ranges), 50):
            part = ranges[start:start + 50]
            where = " OR ".join("(level = ? AND idx >= ? AND idx < ?)" for _ in part)
            params = [v for r in part for v in r]
            for row in await self.rows(f"SELECT level, idx, hash FROM log_nodes WHERE {where}",  # noqa: S608
                                       *params):
                found[(int(row[0]), int(row[1]))] = bytes(row[2])
        return found


# --- making erasure physical ------------------------------------------------------------------


async def purge(db: Database, tables: Iterable[str]) -> bool | None:
    """No old page image may outlive an erasure's commit on disk (as far as the engine allows).

    SQLite: copy the WAL into the database file (freed space is zeroed: secure_delete),
    then cut the WAL to 0 bytes; False if readers kept it busy. PostgreSQL: VACUUM the
    tables, which frees the dead row versions (old bytes may stay in data files, WAL and
    backups; sealed payloads there are ciphertext under a deleted key); None.
    """
    if db.is_sqlite:
        # A TRUNCATE checkpoint waits for readers and holds writers off meanwhile, so
        # each attempt waits at most a quarter second (writers retry for longer than
        # that), on a reader connection outside any transaction: its own thread.
        for attempt in range(8):
            async with db.read() as conn:
                raw: Any = (await conn.get_raw_connection()).driver_connection
                (timeout,), = await raw.execute_fetchall("PRAGMA busy_timeout")
                await raw.execute_fetchall("PRAGMA busy_timeout=250")
                try:
                    rows = list(await raw.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)"))
                finally:
                    await raw.execute_fetchall(f"PRAGMA busy_timeout={int(timeout)}")
            if not (rows and rows[0][0]):
                return True
            await asyncio.sleep(0.25 * (attempt + 1))
        log.warning("WAL checkpoint kept busy by readers; erased pages stay in the WAL until "
                    "the next retention run")
        return False
    async with db.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("VACUUM " + ", ".join(tables))
    return None
