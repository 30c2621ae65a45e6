"""`attribution.egress` over a real socket on SQLite and PostgreSQL: the mapping is logged,
answers name the block's holder with proofs, and the regulator's own check recomputes it."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.schema import log_entries
from gateway.egress.mapping import EgressMap
from gateway.http import appkeys
from gateway.regulator.answer import Exchange, verify_exchange
from gateway.settings import Settings
from tests.conftest import FakeClock
from tests.helpers import bearer, opened, verified_tenant
from tests.integration.test_regulator_api import body_of, kinds, peer_of, setup_regulator

PUBLIC = "203.0.113.7"
EGRESS = {"enabled": True, "interface": "eth9", "addresses": (PUBLIC,), "ipv6": "off"}


async def start(aiohttp_client: Any, settings: Settings, clock: FakeClock) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, clock=clock))
    return client


def holder(result: Any) -> str | None:
    """The peer whose grant answers an egress query."""
    return next(k[2] for k in kinds(result) if k[0] == "peer.provisioned")


async def configured_events(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(select(log_entries.c.leaf, log_entries.c.leaf_hash).where(
            log_entries.c.type == "egress.configured").order_by(log_entries.c.idx))).all()
    return [opened(client.app[appkeys.DATABASE], r) for r in rows]


async def test_egress_attribution_names_the_block_holder(
    aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
    clock: FakeClock
) -> None:
    settings = make_settings(database_url, network={"pools": ("10.100.0.0/24",)}, egress=EGRESS)
    client = await start(aiohttp_client, settings, clock)
    (configured,) = await configured_events(client)
    assert configured["addresses"] == [PUBLIC] and configured["block_size"] == 252
    assert configured["ports"] == "1024-65535" and configured["gateway_id"] == "gw1"
    assert "10.100.0.0/24" in configured["blocked"]
    mapping = EgressMap.from_event(configured)

    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    peer = await peer_of(client, token, tenant, "laptop")
    other = await peer_of(client, token, tenant, "phone")
    # The tenant sees the block its peer's traffic leaves from.
    resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))
    view = await resp.json()
    block = mapping.block_of(ipaddress.IPv4Address(peer["tunnel_ips"][0]))
    assert block is not None
    assert view["egress"] == block.as_dict()
    # Ops see the same, per tenant, and the mapping with its capacity.
    resp = await client.get(f"/ops/v1/tenants/{tenant['id']}/peers", headers=bearer(ops))
    listed = {p["id"]: p["egress"] for p in (await resp.json())["items"]}
    assert listed[peer["id"]] == block.as_dict()
    resp = await client.get("/ops/v1/egress", headers=bearer(ops))
    doc = await resp.json()
    assert doc["enabled"] and doc["capacity"] == 256 and doc["addresses"] == [PUBLIC]
    resp = await client.get("/ops/v1/tenants/01a22ad1-56ef-77fe-b840-fb5550ada09e/peers",
                            headers=bearer(ops))
    assert resp.status == 404
    clock.advance(minutes=5)

    at = "2026-11-30T03:01:00Z"
    answer = await reg.ask({"kind": "attribution.egress", "ip": PUBLIC,
                            "port": block.first_port + 17, "at": at})
    assert kinds(answer) == [("egress.configured", None, None),
                             ("tenant.created", tenant["id"], None),
                             ("peer.provisioned", tenant["id"], peer["id"])]
    assert answer.answer is not None
    assert answer.answer["derivation"] == {"gateway_id": "gw1", "tunnel_ip": peer["tunnel_ips"][0],
                                           "first_port": block.first_port,
                                           "last_port": block.last_port}
    # The last port of the block is still this peer's; the next port is the next peer's.
    edge = await reg.ask({"kind": "attribution.egress", "ip": PUBLIC,
                          "port": block.last_port, "at": at})
    assert holder(edge) == peer["id"]
    nxt = await reg.ask({"kind": "attribution.egress", "ip": PUBLIC,
                         "port": block.last_port + 1, "at": at})
    assert holder(nxt) == other["id"]

    for query in (
        {"ip": PUBLIC, "port": block.first_port, "at": "2026-11-30T02:00:00Z"},  # before
        {"ip": PUBLIC, "port": 80, "at": at},  # below every block
        {"ip": PUBLIC, "port": block.first_port + 252 * 40, "at": at},  # nobody's block
        {"ip": "198.51.100.99", "port": block.first_port, "at": at},  # not our address
    ):
        nobody = await reg.ask({"kind": "attribution.egress", **query})
        assert nobody.records == [], query
        assert nobody.answer is not None and "derivation" not in nobody.answer


async def test_verifier_recomputes_the_mapping(
    aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
    clock: FakeClock
) -> None:
    settings = make_settings(database_url, network={"pools": ("10.100.0.0/24",)}, egress=EGRESS)
    client = await start(aiohttp_client, settings, clock)
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    await peer_of(client, token, tenant, "laptop")
    body = body_of({"kind": "attribution.egress", "ip": PUBLIC, "port": 1024 + 2 * 252 + 1,
                    "at": "2026-11-30T03:00:30Z"})
    exchange = await reg.exchange(body)
    ok = verify_exchange(exchange, reg.pins, now=clock.now().timestamp())
    assert ok.ok, ok.reason()
    # A provider claiming another derivation is caught by the recomputation.
    doc = json.loads(exchange.response_body)
    doc["derivation"]["tunnel_ip"] = "10.100.0.3"
    forged = Exchange(url=exchange.url, request_headers=exchange.request_headers,
                      request_body=exchange.request_body, status=200,
                      response_headers=exchange.response_headers,
                      response_body=json.dumps(doc).encode())
    result = verify_exchange(forged, reg.pins, now=clock.now().timestamp())
    failed = {c.name: c.detail for c in result.checks if not c.ok}
    assert "relevance" in failed and "differs from the recomputed" in failed["relevance"]


async def test_changed_settings_are_logged_once_and_old_times_use_old_mapping(
    aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
    clock: FakeClock
) -> None:
    settings = make_settings(database_url, network={"pools": ("10.100.0.0/24",)}, egress=EGRESS)
    client = await start(aiohttp_client, settings, clock)
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    peer = await peer_of(client, token, tenant, "laptop")  # 10.100.0.2, block 3 of 252 ports
    await client.close()

    clock.advance(hours=1)
    again = await start(aiohttp_client, settings, clock)  # same settings: nothing new logged
    assert len(await configured_events(again)) == 1
    await again.close()

    clock.advance(hours=1)
    wider = settings.replace(egress={"addresses": (PUBLIC, "203.0.113.8"), "block_size": 128})
    client = await start(aiohttp_client, wider, clock)
    events = await configured_events(client)
    assert [e["addresses"] for e in events] == [[PUBLIC], [PUBLIC, "203.0.113.8"]]
    reg.client = client
    old_port = 1024 + 2 * 252 + 3
    new_port = 1024 + 2 * 128 + 3
    before = await reg.ask({"kind": "attribution.egress", "ip": PUBLIC, "port": old_port,
                            "at": "2026-11-30T03:30:00Z"})
    assert holder(before) == peer["id"]
    after = await reg.ask({"kind": "attribution.egress", "ip": PUBLIC, "port": new_port,
                           "at": "2026-11-30T05:30:00Z"})
    assert holder(after) == peer["id"]
    assert [r["event"]["block_size"] for r in after.records
            if r["event"]["type"] == "egress.configured"] == [128]
    stale = await reg.ask({"kind": "attribution.egress", "ip": PUBLIC, "port": old_port,
                           "at": "2026-11-30T05:30:00Z"})
    assert stale.records == []
