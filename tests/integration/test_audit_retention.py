"""Retention erases old payloads for real, keeps every proof valid, and says so in the log."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select, text

from gateway.app import create_app
from gateway.audit import merkle
from gateway.audit.canonical import format_time
from gateway.audit.note import SignedCheckpoint
from gateway.audit.retention import redact_expired
from gateway.audit.schema import address_intervals, endpoint_intervals, log_entries
from gateway.audit.verify import verify_log
from gateway.http import appkeys
from gateway.settings import Settings
from provisioning.events import Event
from tests.conftest import FakeClock
from tests.helpers import bearer, create_peer, ops_token, verified_tenant

Client = TestClient[Any, Any]
RETENTION_DAYS = 30
MARKER_IP = "198.51.100.77"  # a public endpoint that only the log and its index hold


@pytest.fixture
def retention_settings(make_settings: Any, database_url: str) -> Settings:
    settings: Settings = make_settings(database_url, audit={
        "retention_days": RETENTION_DAYS, "retention_interval_seconds": 0.05})
    return settings


@pytest.fixture
async def client(aiohttp_client: Any, retention_settings: Settings, clock: FakeClock) -> Client:
    client: Client = await aiohttp_client(create_app(retention_settings, clock=clock))
    return client


async def old_activity(client: Client, clock: FakeClock) -> str:
    """Provisioning and sessions at the fake 'now'; returns the revoked peer's id."""
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops, legal_name="Retention Probe Ltd")
    kept = await create_peer(client, token, name="kept")
    gone = await create_peer(client, token, name="gone")
    resp = await client.delete(f"/v1/peers/{gone['id']}", headers=bearer(token))
    assert resp.status == 204, await resp.text()
    commands = client.app[appkeys.COMMANDS]
    for n in range(4):  # a few pages' worth of session events
        events = []
        for k in range(25):
            port = 40000 + n * 25 + k
            events.append(Event("session.started", {
                "peer_id": kept["id"], "tenant_id": tenant["id"], "gateway_id": "gw1",
                "endpoint": f"{MARKER_IP}:{port}", "first_handshake": format_time(clock.now())}))
            events.append(Event("session.ended", {
                "peer_id": kept["id"], "tenant_id": tenant["id"], "gateway_id": "gw1",
                "endpoint": f"{MARKER_IP}:{port}", "rx_bytes": 1000 + k, "tx_bytes": 2000 + k,
                "last_handshake": format_time(clock.now())}))
        await commands.record(events)
        await client.app[appkeys.SEQUENCER].drain()
    return str(gone["id"])


def sqlite_bytes(settings: Settings) -> bytes:
    path = Path(settings.database_url.split("///", 1)[1])
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


async def wait_for_redaction(client: Client) -> dict[str, object]:
    """The periodic job (every 0.05 s here) notices the clock moved on; /readyz reports
    the erasure once the run is over, the WAL purge after its commit included."""
    async with asyncio.timeout(10):
        while True:
            ready = await (await client.get("/readyz")).json()
            if "retention" in ready:
                return ready["retention"]["last_erasure"]
            await asyncio.sleep(0.05)


async def test_retention_erases_old_payloads_and_keeps_proofs(
    client: Client, clock: FakeClock, retention_settings: Settings
) -> None:
    app = client.app
    audit, db = app[appkeys.AUDIT_LOG], app[appkeys.DATABASE]
    verifier = app[appkeys.AUDIT_LOG].signer.verifier
    origin = retention_settings.audit.origin
    await old_activity(client, clock)
    old_size = await audit.size()
    old = await audit.entries(list(range(old_size)))
    salts = [json.loads(e.leaf or b"")["salt"].encode() for e in old]
    async with db.read() as conn:
        ended = await conn.scalar(select(func.count()).select_from(endpoint_intervals)
                                  .where(endpoint_intervals.c.end_ts.is_not(None)))
        released = await conn.scalar(select(func.count()).select_from(address_intervals)
                                     .where(address_intervals.c.end_ts.is_not(None)))
    assert ended and released  # the derived index holds the same facts
    if db.is_sqlite:
        # The derived index holds the address in clear; the payloads are sealed at rest.
        raw = sqlite_bytes(retention_settings)
        assert MARKER_IP.encode() in raw and not [s for s in salts if s in raw]

    # A month and a day later some new activity, then the periodic job runs.
    clock.advance(days=RETENTION_DAYS + 1)
    ops = await ops_token(client)
    await verified_tenant(client, ops, legal_name="Fresh Ltd", registration_number="F-1")
    erasure = await wait_for_redaction(client)
    assert erasure["count"] == old_size and erasure["from_index"] == 0
    assert erasure["wal_truncated"] is (True if db.is_sqlite else None)
    await app[appkeys.SEQUENCER].drain()

    size, note = await audit.latest_checkpoint()
    root = SignedCheckpoint.from_text(note, verifier).checkpoint.root_hash
    entries = await audit.entries(list(range(size)))
    assert [e.redacted for e in entries[:old_size]] == [True] * old_size
    assert not any(e.redacted for e in entries[old_size:])
    assert all(e.event() is None for e in entries[:old_size])
    # Every old inclusion proof still verifies: the leaf hashes stayed.
    proofs = await audit.inclusion_proofs(list(range(old_size)), size)
    for before, after in zip(old, entries, strict=False):
        assert after.leaf_hash == before.leaf_hash == merkle.leaf_hash(before.leaf or b"")
        merkle.verify_inclusion(after.leaf_hash, after.index, size, proofs[after.index], root)

    # One retention.redacted event names the range.
    records = [e.event() for e in entries[old_size:]]
    redactions = [r for r in records if r and r["type"] == "retention.redacted"]
    assert len(redactions) == 1
    cutoff = clock.now().replace(microsecond=0) - timedelta(days=RETENTION_DAYS)
    assert redactions[0] | {"salt": "", "ts": ""} == {
        "v": 1, "type": "retention.redacted", "from_index": 0, "to_index": old_size - 1,
        "count": old_size, "before": format_time(cutoff), "salt": "", "ts": ""}

    async with db.read() as conn:
        assert not await conn.scalar(select(func.count()).select_from(endpoint_intervals)
                                     .where(endpoint_intervals.c.end_ts.is_not(None)))
        assert not await conn.scalar(select(func.count()).select_from(address_intervals)
                                     .where(address_intervals.c.end_ts.is_not(None)))
        # the kept peer's address interval is still open: still attributable
        assert await conn.scalar(select(func.count()).select_from(address_intervals))
        assert not await conn.scalar(select(func.count()).select_from(log_entries).where(
            log_entries.c.idx < old_size, log_entries.c.tenant_id.is_not(None)))
        assert not await conn.scalar(select(func.count()).select_from(endpoint_intervals)
                                     .where(endpoint_intervals.c.endpoint_ip == MARKER_IP))
        if not db.is_sqlite:
            hits = await conn.scalar(text(
                "SELECT count(*) FROM log_entries "
                "WHERE position(convert_to(:m, 'UTF8') in leaf) > 0"), {"m": MARKER_IP})
            assert hits == 0

    if db.is_sqlite:  # gone from the file itself, WAL included
        raw = sqlite_bytes(retention_settings)
        assert MARKER_IP.encode() not in raw
        assert not [s for s in salts if s in raw]

    report = await verify_log(db, verifier=verifier, origin=origin)
    assert report.ok, report.problem
    assert report.redacted == old_size


async def test_redact_expired_is_idempotent_and_quiet_when_nothing_is_old(
    client: Client, clock: FakeClock, retention_settings: Settings
) -> None:
    db = client.app[appkeys.DATABASE]
    await old_activity(client, clock)
    kwargs = {"providers": client.app[appkeys.FACT_PROVIDERS],
              "sequence": client.app[appkeys.SEQUENCER].drain}
    nothing = await redact_expired(db, now=clock.now(), retention_days=RETENTION_DAYS, **kwargs)
    assert (nothing.count, nothing.intervals_deleted) == (0, 0)
    later = clock.now() + timedelta(days=RETENTION_DAYS + 1)
    first = await redact_expired(db, now=later, retention_days=RETENTION_DAYS, **kwargs)
    assert first.count > 0 and first.from_index == 0
    again = await redact_expired(db, now=later, retention_days=RETENTION_DAYS, **kwargs)
    assert again.count == 0  # already erased; no second event
    await client.app[appkeys.SEQUENCER].drain()
    async with db.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(log_entries)
                                 .where(log_entries.c.type == "retention.redacted")) == 1
