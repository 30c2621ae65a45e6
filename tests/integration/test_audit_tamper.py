"""Tampering with a stored audit log is caught, with the first bad index and what was done.

Each test builds a real log (events from the use-cases, sequenced in small batches so
there are many checkpoints) on a real SQLite file and on PostgreSQL, changes the stored
rows the way an intruder with database access would, and runs the verifier: in one
process, and with two worker processes sharing the chunks (same problem, same index).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update

from gateway.audit import merkle
from gateway.audit.canonical import canonical_json
from gateway.audit.log import AuditLog
from gateway.audit.note import Checkpoint, Ed25519NoteSigner, SignedCheckpoint, parse_vkey
from gateway.audit.schema import checkpoints, log_entries, log_head, log_nodes
from gateway.audit.verify import ProblemKind, VerifyReport, verify_log
from gateway.cli import main, write_config
from gateway.commands import Commands
from gateway.db import Database
from gateway.keyfiles import load_keys
from gateway.settings import Settings
from provisioning.events import Event
from provisioning.tenants import NewTenant
from tests.conftest import PG_ADMIN_URL, FakeClock, _pg_admin, require_or_skip, write_settings

ENTRIES = 70
BATCH = 3  # events come 2 or 5 per commit: checkpoints at odd and even sizes


@dataclass
class Log:
    db: Database
    signer: Ed25519NoteSigner
    origin: str
    settings: Settings
    audit: AuditLog
    workers: int = 1

    async def verify(self, chunk_size: int = 16, trusted: Sequence[str] = ()) -> VerifyReport:
        return await verify_log(self.db, verifier=self.signer.verifier, origin=self.origin,
                                chunk_size=chunk_size, trusted=trusted, workers=self.workers,
                                parallel_from=0)

    async def sql(self, *statements: Any) -> None:
        async with self.db.write() as conn:
            for statement in statements:
                await conn.execute(statement)

    async def checkpoint_sizes(self) -> list[int]:
        async with self.db.read() as conn:
            return list((await conn.scalars(select(checkpoints.c.size)
                                            .order_by(checkpoints.c.size))).all())

    async def checkpoint_near(self, size: int) -> Any:
        """The checkpoint row with the smallest size >= size."""
        async with self.db.read() as conn:
            return (await conn.execute(select(checkpoints).where(checkpoints.c.size >= size)
                                       .order_by(checkpoints.c.size).limit(1))).one()

    async def row(self, idx: int) -> Any:
        async with self.db.read() as conn:
            return (await conn.execute(select(log_entries).where(log_entries.c.idx == idx))).one()

    async def move(self, mapping: dict[int, int]) -> None:
        """Renumber entries (old index -> new), via negative indexes to dodge the key."""
        async with self.db.write() as conn:
            for old in mapping:
                await conn.execute(update(log_entries).where(log_entries.c.idx == old)
                                   .values(idx=-old - 1))
            for old, new in mapping.items():
                await conn.execute(update(log_entries).where(log_entries.c.idx == -old - 1)
                                   .values(idx=new))


async def build_log(settings: Settings, clock: FakeClock, entries: int = ENTRIES) -> Log:
    db = Database(settings.database_url, pool_size=2)
    await db.migrate()
    origin = settings.audit.origin
    signer = Ed25519NoteSigner(origin, load_keys(settings.data_dir).log)
    audit = AuditLog(db=db, signer=signer, origin=origin, clock=clock)
    commands = Commands(db=db, clock=clock, settings=settings)
    await commands.ensure_pools()
    made = 0
    for i in range(4):
        tenant = await commands.create_tenant(NewTenant.parse(
            {"legal_name": f"Tamper Test {i} Ltd", "registration_number": f"TT-{i}",
             "tax_id": f"NTN-{i}", "country": "PK", "contact_email": f"it{i}@t.example"},
            default_max_peers=5), actor="test")
        await commands.verify_tenant(tenant.id, evidence_reference=f"KYC-{i}", actor="test")
        made += 2
        while await audit.sequence(batch=BATCH):
            pass
    while made < entries:
        n = min(5, entries - made)
        clock.advance(seconds=7)
        await commands.record([Event("session.ended", {
            "peer_id": f"peer-{made + k}", "rx_bytes": 1000 * (made + k), "tx_bytes": 77,
            "endpoint": f"203.0.113.{(made + k) % 250}:51820"}) for k in range(n)])
        made += n
        while await audit.sequence(batch=BATCH):
            pass
    return Log(db, signer, origin, settings, audit)


TABLES = ("log_entries", "log_nodes", "log_head", "checkpoints", "outbox")


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One log per backend per module, with a pristine copy of its tables to restore from."""
    data = tmp_path_factory.mktemp("audit-tamper") / "data"
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{data / 'vpngw.db'}"
    else:
        require_or_skip(request.getfixturevalue("pg_available"),
                        f"PostgreSQL not reachable at {PG_ADMIN_URL}")
        name = f"vpngw_t_{secrets.token_hex(5)}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        request.getfixturevalue("_pg_databases").append(name)
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        url = f"{base}/{name}"
    settings = write_settings(data, url)
    write_config(data / "gateway.toml", {"database": {"url": url}})

    async def build() -> None:
        made = await build_log(settings, FakeClock())
        async with made.db.write() as conn:
            for table in TABLES:
                await conn.exec_driver_sql(
                    f"CREATE TABLE pristine_{table} AS SELECT * FROM {table}")  # noqa: S608
        await made.db.dispose()

    asyncio.run(build())
    return settings


async def restore(built: Settings, workers: int) -> Log:
    db = Database(built.database_url, pool_size=2)
    async with db.write() as conn:
        for table in TABLES:
            await conn.exec_driver_sql(f"DELETE FROM {table}")  # noqa: S608
            await conn.exec_driver_sql(f"INSERT INTO {table} SELECT * FROM pristine_{table}")  # noqa: S608
    origin = built.audit.origin
    signer = Ed25519NoteSigner(origin, load_keys(built.data_dir).log)
    return Log(db, signer, origin, built, AuditLog(db=db, signer=signer, origin=origin,
                                                    clock=FakeClock()), workers)


@pytest.fixture(params=[1, 2], ids=["in-process", "2-workers"])
async def log(built: Settings, request: pytest.FixtureRequest) -> AsyncIterator[Log]:
    restored = await restore(built, request.param)
    yield restored
    await restored.db.dispose()


def forged_leaf(note: str = "forged") -> bytes:
    return canonical_json({"v": 1, "type": "session.ended", "ts": "2026-11-30T03:00:00Z",
                           "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "peer_id": note,
                           "rx_bytes": 1, "tx_bytes": 1})


def entry_row(idx: int, leaf: bytes) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {"idx": idx, "leaf": leaf, "leaf_hash": merkle.leaf_hash(leaf), "type": "session.ended",
            "tenant_id": None, "peer_id": "forged", "ts": datetime(2026, 11, 30, 3, tzinfo=UTC)}


def assert_problem(report: VerifyReport, kind: ProblemKind, index: int) -> None:
    assert report.problem is not None, "tampering went unnoticed"
    assert (report.problem.kind, report.problem.index) == (kind, index), report.problem


# --- the intact log --------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [2, 16, 1 << 15])
async def test_intact_log_verifies(log: Log, chunk_size: int) -> None:
    report = await log.verify(chunk_size)
    assert report.ok, report.problem
    assert report.entries == ENTRIES
    assert report.checkpoints == len(await log.checkpoint_sizes()) > ENTRIES // 5
    assert report.latest_checkpoint == ENTRIES
    assert report.root == await log.audit.root_at(ENTRIES)


# --- edits -----------------------------------------------------------------------------------


async def test_one_changed_byte_is_an_edit(log: Log) -> None:
    row = await log.row(23)
    leaf = bytearray(row.leaf)
    leaf[leaf.index(b'"salt":"') + 9] ^= 0x01  # still valid JSON, other salt
    await log.sql(update(log_entries).where(log_entries.c.idx == 23).values(leaf=bytes(leaf)))
    report = await log.verify()
    assert_problem(report, ProblemKind.EDITED, 23)
    assert report.entries == 23  # everything before it checked out


async def test_rewrite_with_matching_hash_is_localised_by_the_signed_tree(log: Log) -> None:
    leaf = forged_leaf()
    await log.sql(update(log_entries).where(log_entries.c.idx == 30)
                  .values(leaf=leaf, leaf_hash=merkle.leaf_hash(leaf)))
    assert_problem(await log.verify(), ProblemKind.EDITED, 30)
    assert_problem(await log.verify(chunk_size=1 << 15), ProblemKind.EDITED, 30)


async def test_rewrite_of_an_odd_entry_names_its_pair(log: Log) -> None:
    leaf = forged_leaf()
    await log.sql(update(log_entries).where(log_entries.c.idx == 31)
                  .values(leaf=leaf, leaf_hash=merkle.leaf_hash(leaf)))
    report = await log.verify()
    assert_problem(report, ProblemKind.EDITED, 30)
    assert report.problem is not None and "30 or 31" in report.problem.detail


async def test_non_canonical_leaf_with_its_own_hash_is_malformed(log: Log) -> None:
    row = await log.row(12)
    pretty = json.dumps(json.loads(row.leaf), indent=1).encode()  # same data, other bytes
    await log.sql(update(log_entries).where(log_entries.c.idx == 12)
                  .values(leaf=pretty, leaf_hash=merkle.leaf_hash(pretty)))
    report = await log.verify()
    assert_problem(report, ProblemKind.MALFORMED, 12)
    assert "canonical" in report.problem.detail if report.problem else False


# --- deletions -------------------------------------------------------------------------------


async def test_deleted_row_is_missing(log: Log) -> None:
    await log.sql(delete(log_entries).where(log_entries.c.idx == 17))
    assert_problem(await log.verify(), ProblemKind.MISSING, 17)


async def test_deleted_first_row_is_missing(log: Log) -> None:
    await log.sql(delete(log_entries).where(log_entries.c.idx == 0))
    assert_problem(await log.verify(), ProblemKind.MISSING, 0)


async def test_deletion_hidden_by_renumbering_is_missing(log: Log) -> None:
    await log.sql(delete(log_entries).where(log_entries.c.idx == 40))
    await log.move({i: i - 1 for i in range(41, ENTRIES)})
    report = await log.verify()
    assert_problem(report, ProblemKind.MISSING, 40)


# --- insertions ------------------------------------------------------------------------------


async def test_row_appended_after_the_last_checkpoint_is_inserted(log: Log) -> None:
    await log.sql(insert(log_entries).values(entry_row(ENTRIES, forged_leaf())))
    assert_problem(await log.verify(), ProblemKind.INSERTED, ENTRIES)


async def test_row_inserted_with_renumbering_is_inserted(log: Log) -> None:
    await log.move({i: i + 1 for i in range(ENTRIES - 1, 33, -1)})
    await log.sql(insert(log_entries).values(entry_row(34, forged_leaf())))
    assert_problem(await log.verify(), ProblemKind.INSERTED, 34)


async def test_row_inserted_at_an_odd_index_is_inserted(log: Log) -> None:
    await log.move({i: i + 1 for i in range(ENTRIES - 1, 44, -1)})
    await log.sql(insert(log_entries).values(entry_row(45, forged_leaf())))
    assert_problem(await log.verify(), ProblemKind.INSERTED, 45)


async def test_row_with_a_negative_index_is_inserted(log: Log) -> None:
    await log.sql(insert(log_entries).values(entry_row(-1, forged_leaf())))
    assert_problem(await log.verify(), ProblemKind.INSERTED, 0)


# --- reordering ------------------------------------------------------------------------------


@pytest.mark.parametrize(("i", "j"), [(20, 21), (9, 52), (38, 44)])
async def test_swapped_rows_are_reordered(log: Log, i: int, j: int) -> None:
    await log.move({i: j, j: i})
    report = await log.verify()
    assert_problem(report, ProblemKind.REORDERED, i)
    assert report.problem is not None and str(j) in report.problem.detail


# --- truncation ------------------------------------------------------------------------------


async def test_truncated_tail(log: Log) -> None:
    await log.sql(delete(log_entries).where(log_entries.c.idx >= 50))
    report = await log.verify()
    assert_problem(report, ProblemKind.TRUNCATED, 50)
    assert report.entries == 50


async def test_truncation_that_also_removes_checkpoints_and_head(log: Log) -> None:
    """Cut entries, their checkpoints and the head back to a signed size: the stored
    tree nodes over the removed range still betray it."""
    kept = await log.checkpoint_near(50)
    await log.sql(delete(log_entries).where(log_entries.c.idx >= kept.size),
                  delete(checkpoints).where(checkpoints.c.size > kept.size),
                  update(log_head).values(size=kept.size, root=kept.root))
    assert_problem(await log.verify(), ProblemKind.TRUNCATED, kept.size)


async def test_consistent_truncation_needs_a_checkpoint_kept_outside(log: Log) -> None:
    """Entries, the nodes over them, later checkpoints and the head all cut back to a
    signed size: nothing left in the database contradicts it, but a checkpoint someone
    kept (a regulator's last one) does."""
    latest_size, latest_note = await log.audit.latest_checkpoint()
    kept = await log.checkpoint_near(50)
    await log.sql(delete(log_entries).where(log_entries.c.idx >= kept.size),
                  text("DELETE FROM log_nodes WHERE ((idx + 1) << level) > :n")
                  .bindparams(n=kept.size),
                  delete(checkpoints).where(checkpoints.c.size > kept.size),
                  update(log_head).values(size=kept.size, root=kept.root))
    assert (await log.verify()).ok  # undetectable from inside alone
    report = await log.verify(trusted=[latest_note])
    assert_problem(report, ProblemKind.TRUNCATED, kept.size)
    assert report.problem is not None and report.problem.checkpoint_size == latest_size


async def test_trusted_checkpoint_of_another_history_is_a_fork(log: Log) -> None:
    """A validly signed checkpoint whose root the stored entries do not reproduce."""
    size = 40
    forked = Checkpoint(log.origin, size, merkle.leaf_hash(b"another history")).sign(log.signer)
    report = await log.verify(trusted=[forked])
    assert report.problem is not None and report.problem.checkpoint_size == size
    with pytest.raises(ValueError, match="does not verify"):
        await log.verify(trusted=[forked.replace("\n40\n", "\n41\n")])


# --- checkpoints and nodes --------------------------------------------------------------------


async def test_checkpoint_signed_by_another_key(log: Log) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    row = await log.checkpoint_near(30)
    intruder = Ed25519NoteSigner(log.origin, Ed25519PrivateKey.generate())
    forged = Checkpoint(log.origin, row.size, row.root).sign(intruder)
    await log.sql(update(checkpoints).where(checkpoints.c.size == row.size).values(note=forged))
    assert_problem(await log.verify(), ProblemKind.BAD_SIGNATURE, row.size)


async def test_checkpoint_with_an_altered_root(log: Log) -> None:
    row = await log.checkpoint_near(42)
    body, sig = row.note.split("\n\n", 1)
    lines = body.split("\n")
    lines[2] = "A" * 43 + "="  # another 32-byte root, same signature
    await log.sql(update(checkpoints).where(checkpoints.c.size == row.size)
                  .values(note="\n".join(lines) + "\n\n" + sig))
    assert_problem(await log.verify(), ProblemKind.BAD_SIGNATURE, row.size)


async def test_checkpoint_root_column_changed(log: Log) -> None:
    row = await log.checkpoint_near(12)
    await log.sql(update(checkpoints).where(checkpoints.c.size == row.size)
                  .values(root=b"\x00" * 32))
    assert_problem(await log.verify(), ProblemKind.BAD_CHECKPOINT, row.size)


async def test_corrupt_stored_node_is_reported(log: Log) -> None:
    # The level-6 node over entries [0, 64): served proofs depend on it.
    await log.sql(update(log_nodes).where(log_nodes.c.level == 6, log_nodes.c.idx == 0)
                  .values(hash=b"\x11" * 32))
    assert_problem(await log.verify(), ProblemKind.BAD_NODE, 0)


async def test_payload_erased_without_a_retention_event(log: Log) -> None:
    await log.sql(update(log_entries).where(log_entries.c.idx == 5).values(leaf=None))
    report = await log.verify()
    assert_problem(report, ProblemKind.UNRECORDED_REDACTION, 5)
    assert report.redacted == 1


# --- the CLI ---------------------------------------------------------------------------------


# The CLI reads the same tables on both engines; its tests tamper with the SQLite file.
SQLITE_ONLY = pytest.mark.parametrize("built", ["sqlite"], indirect=True)


@pytest.fixture
def sqlite_dir(log: Log) -> Path:
    assert log.db.is_sqlite
    return log.settings.data_dir


def tamper(data: Path, sql: str, *params: int) -> None:
    with contextlib.closing(sqlite3.connect(data / "vpngw.db")) as conn, conn:
        conn.execute(sql, params)


@SQLITE_ONLY
def test_cli_verify_exit_status_and_first_bad_index(
    sqlite_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--data-dir", str(sqlite_dir)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and f"{ENTRIES}" in out

    tamper(sqlite_dir, "DELETE FROM log_entries WHERE idx = 44")
    # As an operator runs it: a separate process, its exit status and what it prints.
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "audit", "verify",
                           "--data-dir", str(sqlite_dir)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "first bad index  44" in proc.stdout and "missing" in proc.stdout
    assert "missing at index 44" in proc.stderr

    for workers in ([], ["--workers", "1"], ["--workers", "2"]):
        assert main(["audit", "verify", "--data-dir", str(sqlite_dir), "--json", *workers]) == 1
        captured = capsys.readouterr()
        doc = json.loads(captured.out)
        assert doc["ok"] is False
        assert (doc["problem"]["kind"], doc["problem"]["index"]) == ("missing", 44)
        assert "missing at index 44" in captured.err  # --json: the verdict, no progress

    assert main(["audit", "verify", "--data-dir", str(sqlite_dir), "--workers", "0"]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err


@SQLITE_ONLY
def test_cli_verify_against_a_kept_checkpoint(
    sqlite_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "checkpoint", "--data-dir", str(sqlite_dir)]) == 0
    note = capsys.readouterr().out.rpartition("\nvkey: ")[0].rstrip("\n") + "\n"
    kept = tmp_path / "last-seen.note"
    kept.write_text(note, encoding="utf-8")
    d = ["audit", "verify", "--data-dir", str(sqlite_dir), "--checkpoint", str(kept)]
    assert main(d) == 0
    with contextlib.closing(sqlite3.connect(sqlite_dir / "vpngw.db")) as conn:
        cut = conn.execute("SELECT max(size) FROM checkpoints WHERE size <= 60").fetchone()[0]
    tamper(sqlite_dir, "DELETE FROM log_entries WHERE idx >= ?", cut)
    tamper(sqlite_dir, "DELETE FROM log_nodes WHERE ((idx + 1) << level) > ?", cut)
    tamper(sqlite_dir, "DELETE FROM checkpoints WHERE size > ?", cut)
    tamper(sqlite_dir, "UPDATE log_head SET size = ?, root = (SELECT root FROM checkpoints "
                       "WHERE size = ?)", cut, cut)
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(sqlite_dir)]) == 0  # looks fine inside
    assert main(d) == 1
    assert "truncated" in capsys.readouterr().out
    kept.write_text(note.replace("\n70\n", "\n71\n"), encoding="utf-8")
    assert main(d) == 1
    assert "does not verify" in capsys.readouterr().err


@SQLITE_ONLY
def test_cli_checkpoint_and_show(sqlite_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(sqlite_dir)]
    assert main(["audit", "checkpoint", *d]) == 0
    note, _, vkey_line = capsys.readouterr().out.rpartition("vkey: ")
    verifier = parse_vkey(vkey_line.strip())
    signed = SignedCheckpoint.from_text(note.rstrip("\n") + "\n", verifier,
                                        origin=verifier.name)
    assert signed.checkpoint.size == ENTRIES

    assert main(["audit", "show", *d, "--type", "tenant.created"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["INDEX", "TS", "TYPE", "TENANT", "SUMMARY"]
    assert len(lines) == 5 and "Tamper Test 3 Ltd" in lines[4]

    assert main(["audit", "show", *d, "--json", "--since", "2026-11-30T03:00:00Z",
                 "--limit", "3"]) == 0
    docs = json.loads(capsys.readouterr().out)
    assert [x["index"] for x in docs] == [0, 1, 2]
    assert docs[0]["event"]["type"] == "tenant.created"

    assert main(["audit", "show", *d, "--limit", "2"]) == 0
    newest = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in newest[1:]] == [str(ENTRIES - 2), str(ENTRIES - 1)]

    assert main(["audit", "show", *d, "--since", "yesterday"]) == 1
    assert "RFC 3339" in capsys.readouterr().err
    assert main(["audit", "show", *d, "--since", "0001-01-01T00:30:00+01:00"]) == 1
    assert "must lie between" in capsys.readouterr().err


# --- the worker processes ----------------------------------------------------------------------


async def test_a_worker_that_cannot_read_fails_the_run_with_its_reason(tmp_path: Path) -> None:
    from gateway.audit.verify_parallel import ChunkWorkers, WorkerError

    missing = tmp_path / "no-such-dir" / "vpngw.db"
    with pytest.raises(WorkerError, match="unable to open database file"):
        async with ChunkWorkers(workers=2, connect={"sqlite": str(missing)}, chunk=16, end=70,
                                sizes=[], check_json=True) as pool:
            async for _ in pool.results():
                pass


async def _pretty(log: Log, idx: int) -> None:
    pretty = json.dumps(json.loads((await log.row(idx)).leaf), indent=1).encode()
    await log.sql(update(log_entries).where(log_entries.c.idx == idx)
                  .values(leaf=pretty, leaf_hash=merkle.leaf_hash(pretty)))


async def _forge(log: Log, idx: int) -> None:
    leaf = forged_leaf()
    await log.sql(update(log_entries).where(log_entries.c.idx == idx)
                  .values(leaf=leaf, leaf_hash=merkle.leaf_hash(leaf)))


TAMPERS: dict[str, Callable[[Log], Awaitable[None]]] = {
    "edited": lambda log: log.sql(update(log_entries).where(log_entries.c.idx == 33)
                                  .values(leaf_hash=b"\x07" * 32)),
    "rewritten": lambda log: _forge(log, 37),
    "missing": lambda log: log.sql(delete(log_entries).where(log_entries.c.idx == 20)),
    "swapped": lambda log: log.move({16: 47, 47: 16}),
    "node": lambda log: log.sql(update(log_nodes).where(log_nodes.c.level == 6,
                                                        log_nodes.c.idx == 0)
                                .values(hash=b"\x11" * 32)),
    "truncated": lambda log: log.sql(delete(log_entries).where(log_entries.c.idx >= 66)),
    "erased": lambda log: log.sql(update(log_entries).where(log_entries.c.idx == 40)
                                  .values(leaf=None)),
    "malformed": lambda log: _pretty(log, 52),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
async def test_workers_report_exactly_what_one_process_reports(built: Settings,
                                                               tamper: str) -> None:
    """The whole report (problem, detail, counts, root) is the same with 1, 2 or 3 workers
    at every chunk size: chunk results are folded in the same order either way."""
    log = await restore(built, 1)
    try:
        await TAMPERS[tamper](log)
        for chunk_size in (2, 16):
            reports = []
            for workers in (1, 2, 3):
                log.workers = workers
                doc = (await log.verify(chunk_size)).to_dict()
                del doc["elapsed_seconds"], doc["entries_per_second"]
                reports.append(doc)
            assert reports[0]["problem"] is not None, tamper
            assert reports[1] == reports[0] and reports[2] == reports[0], reports
    finally:
        await log.db.dispose()
