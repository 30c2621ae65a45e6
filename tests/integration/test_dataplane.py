"""The app's data plane with a hand-written backend that honours the protocol: desired peers
reach the interface, observations become session events, state survives a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from gateway.wireguard.keys import from_base64
from tests.conftest import FakeClock
from tests.fakes import MemoryBackend
from tests.helpers import bearer, create_peer, ops_token, verified_tenant


async def wait_until(check: Any, within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def dp_settings(make_settings: Any, database_url: str) -> Settings:
    return make_settings(
        database_url,
        wireguard={
            "backend": "userspace",
            "collect_interval_seconds": 0.05,
            "reconcile_interval_seconds": 0.2,
            "session_grace_seconds": 30,
        },
    )


async def logged(client: Any, ops: str, kind: str) -> list[dict[str, Any]]:
    await client.app[appkeys.SEQUENCER].drain()
    resp = await client.get(f"/ops/v1/audit?type={kind}", headers=bearer(ops))
    return [i["event"] for i in (await resp.json())["items"]]


async def test_peers_follow_the_database_and_sessions_survive_a_restart(
    aiohttp_client: Any, dp_settings: Settings, clock: FakeClock
) -> None:
    backend = MemoryBackend()
    client = await aiohttp_client(create_app(dp_settings, clock=clock, backend=backend))
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    key = from_base64(peer["public_key"])

    async def present() -> bool:
        return key in backend.peers

    await wait_until(present)
    assert backend.peers[key].allowed_ips == ("10.100.0.2/32", "fd00:100::2/128")

    backend.handshake(key, at=clock.now(), endpoint="203.0.113.7:40000", rx=1000, tx=2000)

    async def started() -> bool:
        return bool(await logged(client, ops, "session.started"))

    await wait_until(started)
    event = (await logged(client, ops, "session.started"))[0]
    assert event["peer_id"] == peer["id"] and event["tenant_id"] == tenant["id"]
    assert event["endpoint"] == "203.0.113.7:40000"

    async def status_written() -> bool:  # written right after the events, same pass
        resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))
        return bool((await resp.json())["connection"]["connected"])

    await wait_until(status_written)
    resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))
    conn = (await resp.json())["connection"]
    assert (
        conn["connected"] and conn["rx_bytes"] == 1000 and conn["endpoint"] == "203.0.113.7:40000"
    )

    # Roaming, then a restart of the service: nothing is ended by the shutdown itself.
    backend.handshake(key, at=clock.now(), endpoint="198.51.100.4:41000", rx=1500, tx=2500)

    async def roamed() -> bool:
        return bool(await logged(client, ops, "session.roamed"))

    await wait_until(roamed)
    await client.close()
    restarted = await aiohttp_client(create_app(dp_settings, clock=clock, backend=backend))
    assert await logged(restarted, ops, "session.ended") == []

    # The handshake goes stale past 180 s + grace: the session ends with its totals.
    clock.advance(seconds=211)

    async def ended() -> bool:
        return bool(await logged(restarted, ops, "session.ended"))

    await wait_until(ended)
    done = (await logged(restarted, ops, "session.ended"))[0]
    assert (done["rx_bytes"], done["tx_bytes"]) == (1500, 2500)
    assert done["endpoint"] == "198.51.100.4:41000"


async def test_suspension_empties_the_interface_and_faults_show_in_readyz(
    aiohttp_client: Any, dp_settings: Settings, clock: FakeClock
) -> None:
    backend = MemoryBackend()
    client = await aiohttp_client(create_app(dp_settings, clock=clock, backend=backend))
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    keys = [
        from_base64((await create_peer(client, token, name=f"d{i}"))["public_key"])
        for i in range(3)
    ]

    async def all_present() -> bool:
        return set(keys) <= set(backend.peers)

    await wait_until(all_present)
    await client.post(
        f"/ops/v1/tenants/{tenant['id']}/suspension", json={"reason": "audit"}, headers=bearer(ops)
    )

    async def emptied() -> bool:
        return not set(keys) & set(backend.peers)

    await wait_until(emptied, within=2)

    backend.broken = True
    clock.advance(seconds=1)

    async def unready() -> bool:
        return (await client.get("/readyz")).status == 503

    await wait_until(unready, within=5)
    doc = await (await client.get("/readyz")).json()
    assert not doc["components"]["wireguard"]["ok"]
    assert doc["components"]["wireguard"]["detail"]
    # The database is the source of truth: a broken interface changes nothing stored.
    resp = await client.get(f"/ops/v1/tenants/{tenant['id']}", headers=bearer(ops))
    assert (await resp.json())["active_peers"] == 3
    backend.broken = False

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await wait_until(ready, within=10)
