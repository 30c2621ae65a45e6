"""Address pools with quarantine, exhaustion as a clear 507, and peer expiry (injected clock)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from provisioning.gateways import desired_state
from tests.conftest import FakeClock
from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant


@pytest.fixture
async def small_pool_client(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> Any:
    settings: Settings = make_settings(
        database_url,
        network={
            "endpoint": "vpn.test:51820",
            "pools": ("10.0.0.0/29",),
            "address_quarantine_days": 30,
        },
    )
    return await aiohttp_client(create_app(settings, clock=clock))


async def test_pool_exhaustion_and_quarantine(small_pool_client: Any, clock: FakeClock) -> None:
    client = small_pool_client
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    made = [await create_peer(client, token, name=f"p{i}") for i in range(5)]
    assert [p["tunnel_ips"] for p in made] == [[f"10.0.0.{i}"] for i in range(2, 7)]
    resp = await client.post("/v1/peers", json={"name": "sixth"}, headers=bearer(token))
    await assert_problem(resp, 507, "pool-exhausted", detail_has="10.0.0.0/29")

    await client.delete(f"/v1/peers/{made[1]['id']}", headers=bearer(token))
    clock.advance(days=29)
    resp = await client.post("/v1/peers", json={"name": "too-early"}, headers=bearer(token))
    await assert_problem(resp, 507, "pool-exhausted", detail_has="quarantine")

    clock.advance(days=1, seconds=1)
    again = await create_peer(client, token, name="after-quarantine")
    assert again["tunnel_ips"] == ["10.0.0.3"]


async def test_concurrent_requests_fill_the_pool_exactly(small_pool_client: Any) -> None:
    client = small_pool_client
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    results = await asyncio.gather(
        *(client.post("/v1/peers", json={"name": f"c{i}"}, headers=bearer(token)) for i in range(9))
    )
    statuses = sorted(r.status for r in results)
    assert statuses == [201] * 5 + [507] * 4
    ips = [(await r.json())["tunnel_ips"][0] for r in results if r.status == 201]
    assert sorted(ips) == [f"10.0.0.{i}" for i in range(2, 7)]


async def test_expired_peers_leave_the_desired_set(
    small_pool_client: Any, clock: FakeClock
) -> None:
    client = small_pool_client
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, expires_at="2026-11-30T04:00:00Z")
    db = client.app[appkeys.DATABASE]
    gateway_id = client.app[appkeys.SETTINGS].network.gateway_id

    async def desired_ids() -> list[str]:
        async with db.read() as conn:
            state = await desired_state(conn, gateway_id, since=0, now=clock.now())
        return [entry.peer_id for entry in state.peers]

    assert await desired_ids() == [peer["id"]]
    clock.advance(hours=1, seconds=1)
    assert await desired_ids() == []
    await client.app[appkeys.COMMANDS].expire_due_peers()
    resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))
    doc = await resp.json()
    assert doc["status"] == "expired" and doc["tunnel_ips"] == []
    resp = await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))
    await assert_problem(resp, 409, "peer-not-active", detail_has="expired")
