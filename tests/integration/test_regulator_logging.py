"""A regulator query is answered only once the log holds it, on SQLite and PostgreSQL.

Two copies of one signed request racing: one answer, one replay refusal, one logged
query. A log that cannot take the query in (the sequencer failing, or held up past
regulator.log_wait_seconds): 503 problem+json with Retry-After, no answer, and the query
stays recorded (its nonce used), so it reaches the log once the log recovers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from tests.conftest import FakeClock
from tests.helpers import assert_problem, verified_tenant
from tests.integration.test_regulator_api import (
    MakeClient,
    body_of,
    make_client,  # noqa: F401  (fixture)
    peer_of,
    regulator_queries,
    setup_regulator,
)


async def test_two_copies_of_one_request_get_one_answer_and_one_log_entry(
    make_client: MakeClient, clock: FakeClock  # noqa: F811
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    peer = await peer_of(client, token, tenant, "laptop")
    body = body_of({"kind": "attribution.tunnel_ip", "ip": peer["tunnel_ips"][0],
                    "at": "2026-11-30T03:00:00Z"})
    headers = reg.sign(body)
    first, second = await asyncio.gather(reg.post(body, headers), reg.post(body, headers))
    statuses = sorted([first.status, second.status])
    assert statuses == [200, 401], [await first.text(), await second.text()]
    refusal = first if first.status == 401 else second
    await assert_problem(refusal, 401, "signature-nonce", detail_has="already used")
    assert len(await regulator_queries(client)) == 1


async def _refuse_log_entries(client: TestClient[Any, Any]) -> None:
    """A real storage failure for the sequencer only: inserting log entries fails."""
    db = client.app[appkeys.DATABASE]
    async with db.write() as conn:
        if db.is_sqlite:
            await conn.execute(text(
                "CREATE TRIGGER log_offline BEFORE INSERT ON log_entries "
                "BEGIN SELECT RAISE(ABORT, 'log storage offline'); END"))
        else:
            await conn.execute(text(
                "CREATE FUNCTION log_offline() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'log storage offline'; END $$"))
            await conn.execute(text(
                "CREATE TRIGGER log_offline BEFORE INSERT ON log_entries "
                "FOR EACH STATEMENT EXECUTE FUNCTION log_offline()"))


async def _restore_log_entries(client: TestClient[Any, Any]) -> None:
    db = client.app[appkeys.DATABASE]
    async with db.write() as conn:
        if db.is_sqlite:
            await conn.execute(text("DROP TRIGGER log_offline"))
        else:
            await conn.execute(text("DROP TRIGGER log_offline ON log_entries"))
            await conn.execute(text("DROP FUNCTION log_offline()"))


async def test_a_failing_log_refuses_the_query_with_503_and_keeps_it_recorded(
    make_client: MakeClient, clock: FakeClock  # noqa: F811
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant, _ = await verified_tenant(client, ops)
    await client.app[appkeys.SEQUENCER].drain()
    body = body_of({"kind": "activity.tenant", "tenant_id": tenant["id"],
                    "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T04:00:00Z"})
    headers = reg.sign(body)

    await _refuse_log_entries(client)
    resp = await reg.post(body, headers)
    await assert_problem(resp, 503, "not-logged", detail_has="retry later")
    assert int(resp.headers["Retry-After"]) >= 1
    assert "Signature" not in resp.headers  # nothing signed, nothing answered

    await _restore_log_entries(client)
    # Recorded before the failure: the log takes the query in once it works again, and
    # the request cannot be replayed for an answer.
    logged = await regulator_queries(client)
    assert [e["query_kind"] for e in logged] == ["activity.tenant"]
    await assert_problem(await reg.post(body, headers), 401, "signature-nonce")
    assert (await reg.post(body, reg.sign(body))).status == 200
    assert len(await regulator_queries(client)) == 2


async def test_a_log_held_up_past_the_wait_refuses_the_query_with_503(
    aiohttp_client: Any, make_settings: Any, postgres_url: str, clock: FakeClock
) -> None:
    # PostgreSQL: another session holds the log head's row lock, so the sequencer waits
    # while the query itself can still be recorded.
    settings: Settings = make_settings(postgres_url, regulator={"log_wait_seconds": 0.5})
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, clock=clock))
    reg, ops = await setup_regulator(client, clock)
    tenant, _ = await verified_tenant(client, ops)
    await client.app[appkeys.SEQUENCER].drain()
    body = body_of({"kind": "activity.tenant", "tenant_id": tenant["id"],
                    "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T04:00:00Z"})

    blocker = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        holding = blocker.transaction()
        await holding.start()
        await blocker.execute("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")
        resp = await reg.post(body, reg.sign(body))
        await assert_problem(resp, 503, "not-logged", detail_has="0.5 s")
        assert resp.headers["Retry-After"] == "1"
        await holding.rollback()
    finally:
        await blocker.close()
    assert [e["query_kind"] for e in await regulator_queries(client)] == ["activity.tenant"]
