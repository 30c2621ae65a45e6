"""The public transparency report over a real socket on SQLite and PostgreSQL: embargo,
counts equal to a brute-force count of the log, nothing identifying, a signature anyone
can check, and `vpngw-regulator report verify` recounting it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.audit.note import parse_vkey
from gateway.audit.schema import log_entries
from gateway.http import appkeys
from gateway.transparency.report import check_report
from provisioning.events import Event
from tests.conftest import FakeClock
from tests.helpers import assert_problem, bearer, opened, verified_tenant
from tests.integration.test_regulator_api import (  # noqa: F401 - make_client is a fixture
    MakeClient,
    make_client,
    peer_of,
    record,
    setup_regulator,
)


async def all_events(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(select(log_entries.c.leaf, log_entries.c.leaf_hash)
                                    .order_by(log_entries.c.idx))).all()
    return [opened(client.app[appkeys.DATABASE], r) for r in rows]


async def test_quarterly_report(make_client: MakeClient, clock: FakeClock) -> None:  # noqa: F811
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    peer = await peer_of(client, token, tenant, "laptop")
    for query in (
        {"kind": "attribution.tunnel_ip", "ip": peer["tunnel_ips"][0],
         "at": "2026-11-30T03:00:00Z"},
        {"kind": "activity.peer", "peer_id": peer["id"], "from": "2026-11-29T00:00:00Z",
         "to": "2026-11-30T03:00:00Z"},
        {"kind": "activity.tenant", "tenant_id": tenant["id"], "from": "2026-11-29T00:00:00Z",
         "to": "2026-11-30T03:00:00Z"},
    ):
        await reg.ask(query)
    await record(client, Event("regulator.refused", {
        "reason": "nonce-replayed", "key_id": reg.keyid, "request_country": "PK",
        "request_authority": "PTA", "body_sha256": "0" * 64}))

    # Embargoed until the quarter's end plus 90 days.
    resp = await client.get("/transparency/v1/reports/2026-Q4")
    problem = await assert_problem(resp, 404, "report-not-published", detail_has="2027-04-01")
    assert problem["field"] == "period"
    for bad in ("2026-Q5", "Q4-2026", "2026-Q٤"):
        resp = await client.get(f"/transparency/v1/reports/{bad}")
        await assert_problem(resp, 400, "invalid-input")

    clock.advance(days=123)  # 2027-04-02
    resp = await client.get("/transparency/v1/reports/2026-Q4")
    assert resp.status == 200, await resp.text()
    served = await resp.json()
    doc = served["report"]

    # Brute force over the whole log, independently of the report's own tally.
    events = [e for e in await all_events(client) if e["ts"] < "2027-01-01"]
    queries = [e for e in events if e["type"] == "regulator.query"]
    assert doc["queries_answered"] == len(queries) == 3
    assert doc["queries_refused"] == 1
    assert {r["query_kind"]: r["count"] for r in doc["by_query_kind"]} == dict(
        Counter(e["query_kind"] for e in queries))
    assert doc["by_legal_basis"] == [{"legal_basis": "PECA 2016 s.32", "count": 3}]
    assert doc["by_authority"] == [{"country": "PK", "authority": "PTA", "answered": 3,
                                    "refused": 1}]
    assert doc["distinct_authorisations"] == 1
    assert doc["log"]["checkpoint_size"] > doc["log"]["last_index"]

    # Nothing that identifies a subject, a warrant or a key.
    text = json.dumps(served)
    for secret in (tenant["id"], peer["id"], *peer["tunnel_ips"], "PTA/LI/2026/0042",
                   reg.keyid, tenant["legal_name"]):
        assert secret not in text, secret

    # Anyone checks the signature with the log key; ops can recount.
    keys = await (await client.get("/regulator/v1/keys")).json()
    verifier = parse_vkey(keys["log"]["vkey"])
    assert len(check_report(doc, served["note"], log_vkey_verifier=verifier)) == 2
    # The same report every time (deterministic checkpoint and signature).
    again = await (await client.get("/transparency/v1/reports/2026-Q4")).json()
    assert again == served

    url = f"http://{client.host}:{client.port}"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.regulator.cli", "report", "verify", "--url", url,
         "--vkey", keys["log"]["vkey"], "--period", "2026-Q4", "--ops-token", ops, "--json"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and any(c.startswith("counts:") for c in out["checks"])
    resp = await client.get("/ops/v1/audit?type=regulator.query", headers=bearer(ops))
    assert resp.status == 200
