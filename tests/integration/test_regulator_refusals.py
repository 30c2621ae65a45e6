"""Refused regulator requests: logged (rate-limited) for registered key ids, counted otherwise."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.schema import log_entries
from gateway.http import appkeys
from gateway.settings import Settings
from tests.conftest import FakeClock
from tests.helpers import assert_problem, opened
from tests.integration.test_regulator_api import body_of, refused, setup_regulator

LIMIT = 3
QUERY = {"kind": "attribution.tunnel_ip", "ip": "10.100.0.2", "at": "2026-11-30T03:00:00Z"}


@pytest.fixture
async def client(aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
                 clock: FakeClock) -> TestClient[Any, Any]:
    settings = make_settings(database_url, regulator={"refusal_log_per_minute": LIMIT})
    made: TestClient[Any, Any] = await aiohttp_client(create_app(settings, clock=clock))
    return made


async def refusals(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(
            select(log_entries.c.leaf, log_entries.c.leaf_hash)
            .where(log_entries.c.type == "regulator.refused")
            .order_by(log_entries.c.idx))).all()
    return [opened(client.app[appkeys.DATABASE], r) for r in rows]


async def metric(client: TestClient[Any, Any], series: str) -> int:
    text = await (await client.get("/metrics")).text()
    found = [line for line in text.splitlines() if line.startswith(series + " ")]
    return int(found[0].split()[-1]) if found else 0


async def test_refusal_with_a_registered_key_id_is_in_the_log(
    client: TestClient[Any, Any], clock: FakeClock
) -> None:
    reg, _ = await setup_regulator(client, clock)
    body = body_of(QUERY)
    forged = reg.sign(body, key=Ed25519PrivateKey.generate())  # right key id, wrong key
    await refused(reg, body, forged, "signature")
    out_of_scope = body_of({**QUERY, "at": "2027-03-01T00:00:00Z"})
    resp = await reg.post(out_of_scope, reg.sign(out_of_scope))
    await assert_problem(resp, 403, "out-of-scope")

    logged = await refusals(client)
    assert [e["reason"] for e in logged] == ["signature-signature", "out-of-scope"]
    first = logged[0]
    assert first["key_id"] == reg.keyid
    assert first["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert (first["request_country"], first["request_authority"], first["request_number"]) == (
        "PK", "PTA", "2026-000123")
    assert "suppressed" not in first
    assert logged[1]["body_sha256"] == hashlib.sha256(out_of_scope).hexdigest()


async def test_refusals_are_rate_limited_per_key_id(
    client: TestClient[Any, Any], clock: FakeClock
) -> None:
    reg, _ = await setup_regulator(client, clock)
    body = body_of(QUERY)
    for _ in range(LIMIT + 4):
        await refused(reg, body, reg.sign(body, key=Ed25519PrivateKey.generate()), "signature")
    assert len(await refusals(client)) == LIMIT  # the flood stops at the limit
    series = 'vpngw_regulator_refusals_total{key="registered",reason="signature-signature"}'
    assert await metric(client, series) == LIMIT + 4  # ...the metric counts every one


async def test_unknown_key_ids_reach_only_the_metric(
    client: TestClient[Any, Any], clock: FakeClock
) -> None:
    reg, _ = await setup_regulator(client, clock)
    body = body_of(QUERY)
    for n in range(3):
        await refused(reg, body, reg.sign(body, keyid=f"made-up-{n}"), "keyid")
    resp = await reg.post(body, {"Content-Type": "application/json"})  # no signature at all
    assert resp.status == 401
    assert await refusals(client) == []
    series = 'vpngw_regulator_refusals_total{key="unknown",reason="signature-keyid"}'
    assert await metric(client, series) == 3
    text = await (await client.get("/metrics")).text()
    assert "made-up" not in text  # attacker-chosen names never become label values


async def test_two_processes_share_one_refusal_budget(
    client: TestClient[Any, Any], aiohttp_client: Any, clock: FakeClock
) -> None:
    """A second control-plane process on the same database gives a flood no second budget."""
    other: TestClient[Any, Any] = await aiohttp_client(
        create_app(client.app[appkeys.SETTINGS], clock=clock))
    reg, _ = await setup_regulator(client, clock)
    regs = [reg, dataclasses.replace(reg, client=other)]
    body = body_of(QUERY)
    for n in range(2 * LIMIT + 2):
        sender = regs[n % 2]
        await refused(sender, body, sender.sign(body, key=Ed25519PrivateKey.generate()),
                      "signature")
    await other.app[appkeys.SEQUENCER].drain()
    assert len(await refusals(client)) == LIMIT

    clock.advance(seconds=60)  # the next minute: the first refusal counts what was dropped
    await refused(regs[1], body, regs[1].sign(body, key=Ed25519PrivateKey.generate()),
                  "signature")
    await other.app[appkeys.SEQUENCER].drain()
    logged = await refusals(client)
    assert len(logged) == LIMIT + 1
    assert logged[-1]["suppressed"] == LIMIT + 2
