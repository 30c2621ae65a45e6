"""A regulator answer includes what committed before the query arrived, even when the
background sequencer has not moved it into the log yet (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from tests.conftest import FakeClock
from tests.helpers import verified_tenant
from tests.integration.test_regulator_api import peer_of, setup_regulator


async def test_a_peer_created_just_before_the_query_is_found(
    aiohttp_client: Any, settings: Settings, clock: FakeClock
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, clock=clock))
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    # Park the background sequencer: the new peer's event stays in the outbox.
    client.app[appkeys.SEQUENCER].stop()
    peer = await peer_of(client, token, tenant, "laptop")
    clock.advance(seconds=5)
    found = await reg.ask({"kind": "attribution.tunnel_ip", "ip": peer["tunnel_ips"][0],
                           "at": clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert [r["event"]["peer_id"] for r in found.records
            if r["event"]["type"] == "peer.provisioned"] == [peer["id"]]
