"""Peers stored before the key checks landed, with a key that can never make a tunnel (a
Curve25519 point of small order, or the gateway's own key): at start the data plane names
them in a warning and leaves them off the interface; nothing stored is deleted."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import select, update
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from gateway.wireguard.keys import from_base64
from provisioning.keys import SMALL_ORDER_PUBLIC_KEYS
from provisioning.schema import peers, public_keys
from tests.conftest import FakeClock
from tests.fakes import MemoryBackend
from tests.helpers import bearer, create_peer, ops_token, verified_tenant
from tests.integration.test_dataplane import wait_until

# The all-zero point with its unused top bit set: small order all the same.
SMALL_ORDER = base64.b64encode(SMALL_ORDER_PUBLIC_KEYS[0][:31] + b"\x80").decode()


@pytest.fixture
def dp_settings(make_settings: Any, database_url: str) -> Settings:
    return make_settings(database_url, wireguard={
        "backend": "userspace", "collect_interval_seconds": 0.05,
        "reconcile_interval_seconds": 0.2})


async def test_stored_peers_with_unusable_keys_are_named_and_left_off(
    aiohttp_client: Any, dp_settings: Settings, clock: FakeClock
) -> None:
    backend = MemoryBackend()
    client = await aiohttp_client(create_app(dp_settings, clock=clock, backend=backend))
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    good, weak, mirror = [await create_peer(client, token) for _ in range(3)]
    gateway_key = client.app[appkeys.KEYS].wireguard_public
    db = client.app[appkeys.DATABASE]
    # As such peers were stored before the API refused their keys.
    async with db.write() as conn:
        for peer, key in ((weak, SMALL_ORDER), (mirror, gateway_key)):
            await conn.execute(update(public_keys).where(
                public_keys.c.public_key == peer["public_key"]).values(public_key=key))
            await conn.execute(update(peers).where(peers.c.id == peer["id"])
                               .values(public_key=key))
    await client.close()

    with capture_logs() as logs:
        restarted = await aiohttp_client(create_app(dp_settings, clock=clock, backend=backend))

        async def only_the_good_one() -> bool:
            return set(backend.peers) == {from_base64(good["public_key"])}

        await wait_until(only_the_good_one)
    warned = {e["public_key"]: e["reason"] for e in logs
              if e["event"].startswith("stored peer left off the interface")}
    assert warned == {SMALL_ORDER: "a Curve25519 point of small order",
                      gateway_key: "the interface's own public key"}
    assert all(e["log_level"] == "warning" for e in logs
               if e["event"].startswith("stored peer left off"))

    # Nothing deleted: the peers are still there, active, for ops or the tenant to fix.
    async with restarted.app[appkeys.DATABASE].read() as conn:
        stored = dict((await conn.execute(select(peers.c.id, peers.c.status))).all())
    assert stored == {good["id"]: "active", weak["id"]: "active", mirror["id"]: "active"}
    listed = await restarted.get("/v1/peers", headers=bearer(token))
    assert len((await listed.json())["items"]) == 3
