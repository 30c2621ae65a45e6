"""The regulator index writes a batch of session events with a fixed number of statements,
and leaves exactly the rows that indexing the same entries one at a time leaves."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, event, select

from gateway.audit.canonical import format_time
from gateway.audit.log import SequencedEntry
from gateway.audit.schema import address_intervals, endpoint_intervals
from gateway.db import Database
from gateway.regulator.index import index_entries

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
PEERS = [f"peer-{n}" for n in range(7)]


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, pool_size=2)
    await database.migrate()
    yield database
    await database.dispose()


def entries(seed: int, count: int) -> list[SequencedEntry]:
    """Session events of several peers in random order (starts, roams, ends, repeats),
    with grants and releases of tunnel addresses among them."""
    rng = random.Random(seed)
    out = []
    for index in range(count):
        ts = T0 + timedelta(seconds=index)
        peer = rng.choice(PEERS)
        kind = rng.choice(["session.started", "session.started", "session.roamed",
                           "session.ended", "session.ended", "peer.provisioned",
                           "address.released"])
        doc: dict[str, Any] = {"type": kind, "peer_id": peer, "tenant_id": "tenant-1",
                               "ts": format_time(ts)}
        address = f"10.100.0.{PEERS.index(peer) + 2}"
        if kind == "peer.provisioned":
            doc["tunnel_ips"] = [address]
        elif kind == "address.released":
            doc["address"] = address
        else:
            doc["endpoint"] = f"203.0.113.{rng.randrange(1, 4)}:{rng.randrange(40000, 40004)}"
            doc["first_handshake"] = format_time(ts - timedelta(seconds=rng.randrange(0, 3)))
        out.append(SequencedEntry(index, doc, ts))
    return out


async def snapshot(db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Both interval tables without their surrogate ids, in a stable order."""
    tables = []
    for table in (endpoint_intervals, address_intervals):
        columns = [c for c in table.c if c.name != "id"]
        async with db.read() as conn:
            rows = (await conn.execute(select(*columns))).all()
        tables.append(sorted((tuple(r) for r in rows), key=repr))
    return tables[0], tables[1]


async def clear(db: Database) -> None:
    async with db.write() as conn:
        await conn.execute(delete(endpoint_intervals))
        await conn.execute(delete(address_intervals))


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_batch_leaves_the_rows_one_at_a_time_leaves(db: Database, seed: int) -> None:
    log = entries(seed, 240)
    # Batched as the sequencer does, across batch boundaries (intervals left open by one
    # batch are ended by the next) ...
    for start in range(0, len(log), 100):
        async with db.write() as conn:
            await index_entries(conn, log[start:start + 100])
    batched = await snapshot(db)
    await clear(db)
    # ... and entry by entry, which is what event-by-event indexing amounted to.
    for entry in log:
        async with db.write() as conn:
            await index_entries(conn, [entry])
    one_by_one = await snapshot(db)
    assert batched == one_by_one
    endpoints = batched[0]
    assert any(row[-1] is None for row in endpoints), "some interval is still open"
    assert any(row[-1] is not None for row in endpoints), "some interval was ended"


async def test_a_batch_of_session_events_is_two_statements_whatever_its_size(
    db: Database,
) -> None:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "endpoint_intervals" in statement:
            statements.append(statement.split()[0].upper())

    event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
    try:
        for size in (10, 1000):
            statements.clear()
            # Every peer starts, roams and ends, over and over.
            kinds = ["session.started", "session.roamed", "session.ended"]
            log = [SequencedEntry(n, {
                "type": kinds[(n // len(PEERS)) % 3], "peer_id": PEERS[n % len(PEERS)],
                "tenant_id": "tenant-1", "endpoint": f"203.0.113.9:{40000 + n}",
                "first_handshake": format_time(T0)}, T0 + timedelta(seconds=n))
                for n in range(size)]
            async with db.write() as conn:
                await index_entries(conn, log)
            # One (executemany) UPDATE ending stored intervals, one INSERT of new ones.
            assert statements == ["UPDATE", "INSERT"], statements
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
