"""Erasure by key destruction: once retention deletes a day's payload key, that day's payloads
are unreadable in every copy of the database, and their plaintext was never in any file.

On SQLite the database file, its WAL and a copy taken before retention are searched; on
PostgreSQL the data files of the test's own database (CHECKPOINT first), the cluster's WAL
and a pg_dump taken before retention. Proofs over the erased entries still verify.
"""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select
from sqlalchemy.engine import make_url

from gateway.app import create_app
from gateway.audit import merkle
from gateway.audit.note import SignedCheckpoint
from gateway.audit.payloadkeys import PayloadKeys, day_of, day_start
from gateway.audit.retention import redact_expired
from gateway.audit.schema import log_entries
from gateway.audit.storage import Opener
from gateway.audit.verify import verify_log
from gateway.db import Database
from gateway.http import appkeys
from gateway.settings import Settings
from provisioning.events import Event
from tests.conftest import FakeClock
from tests.helpers import ops_token, verified_tenant

Client = TestClient[Any, Any]
RETENTION_DAYS = 30


@pytest.fixture
def settings(make_settings: Any, database_url: str) -> Settings:
    made: Settings = make_settings(database_url, audit={
        "retention_days": RETENTION_DAYS, "retention_interval_seconds": 3600})
    return made


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: FakeClock) -> Client:
    made: Client = await aiohttp_client(create_app(settings, clock=clock))
    return made


# --- the files of each database ----------------------------------------------------------------


def _hex_bytea(cell: str) -> bytes | None:
    return None if cell == r"\N" else bytes.fromhex(cell.removeprefix("\\\\x"))


def pg_dump_rows(url: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A plain pg_dump of the log and the outbox: its bytes, and (leaf, leaf_hash) per row."""
    u = make_url(url)
    dump = subprocess.run(
        ["pg_dump", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432), "-U",
         u.username or "postgres", "--data-only", "-t", "log_entries", "-t", "outbox",
         u.database or ""], check=True, capture_output=True, timeout=60).stdout
    rows, columns = [], None
    for line in dump.decode().splitlines():
        if line.startswith("COPY public.log_entries") or line.startswith("COPY public.outbox"):
            columns = line[line.index("(") + 1:line.index(")")].split(", ")
        elif line == "\\.":
            columns = None
        elif columns is not None:
            cells = dict(zip(columns, line.split("\t"), strict=True))
            leaf = _hex_bytea(cells["leaf"])
            if leaf is not None:
                rows.append((leaf, _hex_bytea(cells["leaf_hash"]) or b""))
    return dump, rows


async def pg_files(url: str) -> bytes:
    """Every data file of this database and the cluster's WAL, after a CHECKPOINT."""
    import asyncpg

    u = make_url(url)
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username, database="postgres")
    try:
        await conn.execute("CHECKPOINT")
        data_dir = Path(await conn.fetchval("SHOW data_directory"))
        oid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = $1", u.database)
    finally:
        await conn.close()
    files = [*(data_dir / "base" / str(oid)).iterdir(), *(data_dir / "pg_wal").glob("0*")]
    return b"".join(f.read_bytes() for f in files if f.is_file())


def sqlite_files(settings: Settings) -> bytes:
    path = Path(settings.database_url.split("///", 1)[1])
    return b"".join(f.read_bytes() for f in path.parent.glob(path.name + "*"))


def sqlite_rows(path: Path) -> list[tuple[bytes, bytes]]:
    with sqlite3.connect(path) as conn:
        return [(bytes(leaf), bytes(h)) for leaf, h in conn.execute(
            "SELECT leaf, leaf_hash FROM log_entries WHERE leaf IS NOT NULL")]


# --- the test ------------------------------------------------------------------------------------


async def test_erased_payloads_are_unreadable_everywhere_and_proofs_still_verify(
    client: Client, clock: FakeClock, settings: Settings, tmp_path: Path
) -> None:
    app = client.app
    db: Database = app[appkeys.DATABASE]
    audit = app[appkeys.AUDIT_LOG]
    assert db.payload_keys is not None
    marker = f"erasure-probe-{secrets.token_hex(8)}"  # only ever in payloads
    legal_name = f"Clear Text {secrets.token_hex(4)} Ltd"  # stored in clear in tenants
    ops = await ops_token(client)
    tenant, _ = await verified_tenant(client, ops, legal_name=legal_name)
    await app[appkeys.COMMANDS].record([
        Event("tenant.suspended", {"tenant_id": tenant["id"], "reason": f"{marker} #{n}"})
        for n in range(40)])
    await app[appkeys.SEQUENCER].drain()
    old_size = await audit.size()
    old = await audit.entries(list(range(old_size)))
    assert all(e.leaf is not None for e in old)  # opened transparently while the key exists
    salts = [e.event()["salt"].encode() for e in old]  # type: ignore[index]
    probes = [marker.encode(), *salts]
    old_day = day_of(clock.now())
    assert old_day in db.payload_keys.days()

    # A backup taken now, before retention: it holds ciphertext only, and it opens.
    if db.is_sqlite:
        async with db.read() as conn:
            raw: Any = (await conn.get_raw_connection()).driver_connection
            await raw.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        backup = tmp_path / "backup.db"
        shutil.copyfile(Path(settings.database_url.split("///", 1)[1]), backup)
        dump, backed_up = backup.read_bytes(), sqlite_rows(backup)
        at_rest = sqlite_files(settings)
    else:
        dump, backed_up = pg_dump_rows(settings.database_url)
        at_rest = await pg_files(settings.database_url)
    assert len(backed_up) >= old_size
    assert legal_name.encode() in at_rest  # the search does see what is stored in clear
    assert not [p for p in probes if p in at_rest], "a payload's plaintext is in a file"
    assert not [p for p in probes if p in dump], "a payload's plaintext is in the backup"
    opener = Opener(db.payload_keys)
    opened_before = [opener.strict(leaf, h) for leaf, h in backed_up]
    assert {merkle.leaf_hash(e.leaf or b"") for e in old} <= {
        merkle.leaf_hash(leaf) for leaf in opened_before if leaf is not None}

    # Past the retention period, with the whole day before the cut-off.
    clock.advance(days=RETENTION_DAYS + 1, hours=23)
    result = await redact_expired(db, now=clock.now(), retention_days=RETENTION_DAYS,
                                  providers=app[appkeys.FACT_PROVIDERS],
                                  sequence=app[appkeys.SEQUENCER].drain)
    await app[appkeys.SEQUENCER].drain()
    assert result.count >= old_size
    assert day_start(old_day) in result.keys_deleted
    assert old_day not in db.payload_keys.days()
    assert old_day not in PayloadKeys(db.payload_keys.path).days()  # as another process sees it

    # The backup made before retention no longer opens for that day.
    old_hashes = {e.leaf_hash for e in old}
    in_backup = [(leaf, h) for leaf, h in backed_up if h in old_hashes]
    assert len(in_backup) == old_size
    assert all(opener.strict(leaf, h) is None for leaf, h in in_backup)

    # No file of the live database holds the plaintext either.
    at_rest = sqlite_files(settings) if db.is_sqlite else await pg_files(settings.database_url)
    assert legal_name.encode() in at_rest
    assert not [p for p in probes if p in at_rest]

    # Every proof over the erased entries still verifies; so does the whole log.
    size, note = await audit.latest_checkpoint()
    root = SignedCheckpoint.from_text(note, audit.signer.verifier).checkpoint.root_hash
    proofs = await audit.inclusion_proofs(list(range(old_size)), size)
    for before, after in zip(old, await audit.entries(list(range(old_size))), strict=True):
        assert after.redacted and after.leaf_hash == merkle.leaf_hash(before.leaf or b"")
        merkle.verify_inclusion(after.leaf_hash, after.index, size, proofs[after.index], root)
    report = await verify_log(db, verifier=audit.signer.verifier, origin=settings.audit.origin)
    assert report.ok, report.problem
    assert report.redacted >= old_size


async def test_a_missing_key_reads_as_erased_never_as_a_crash(
    client: Client, clock: FakeClock, settings: Settings
) -> None:
    """A restored database whose day key is gone: the ops view and the regulator's lookup
    report those payloads as erased; verify names the entries the key covered."""
    app = client.app
    db: Database = app[appkeys.DATABASE]
    assert db.payload_keys is not None
    ops = await ops_token(client)
    await verified_tenant(client, ops, legal_name="Lost Key Ltd")
    await app[appkeys.SEQUENCER].drain()
    size = await app[appkeys.AUDIT_LOG].size()
    db.payload_keys.forget_before(day_of(clock.now()) + 1)  # as if the key file were lost

    entries = await app[appkeys.AUDIT_LOG].entries(list(range(size)))
    assert entries and all(e.redacted for e in entries)
    resp = await client.get("/ops/v1/audit", headers={"Authorization": f"Bearer {ops}"})
    assert resp.status == 200, await resp.text()
    assert all(item["redacted"] and item["event"] is None for item in (await resp.json())["items"])
    async with db.read() as conn:
        stored = (await conn.execute(select(log_entries.c.leaf))).scalars().all()
    assert all(leaf is not None for leaf in stored)  # the rows are there, just unreadable
    report = await verify_log(db, verifier=app[appkeys.AUDIT_LOG].signer.verifier,
                              origin=settings.audit.origin)
    assert report.problem is not None and report.problem.kind == "unrecorded_redaction"
    assert report.problem.index == 0


async def test_swapped_sealed_payloads_are_an_edit(
    client: Client, settings: Settings
) -> None:
    """A ciphertext moved to another entry does not open there: verify names the first."""
    app = client.app
    db: Database = app[appkeys.DATABASE]
    ops = await ops_token(client)
    await verified_tenant(client, ops, legal_name="Swap Probe Ltd")
    await app[appkeys.SEQUENCER].drain()
    async with db.write() as conn:
        one, two = (await conn.execute(select(log_entries.c.idx, log_entries.c.leaf)
                                       .where(log_entries.c.idx.in_([1, 3]))
                                       .order_by(log_entries.c.idx))).all()
        for idx, leaf in ((one.idx, two.leaf), (two.idx, one.leaf)):
            await conn.execute(log_entries.update().where(log_entries.c.idx == idx)
                               .values(leaf=leaf))
    entries = await app[appkeys.AUDIT_LOG].entries([1, 3])
    assert [e.leaf for e in entries] == [None, None]  # unreadable, never the other's payload
    report = await verify_log(db, verifier=app[appkeys.AUDIT_LOG].signer.verifier,
                              origin=settings.audit.origin)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.index) == ("edited", 1)
