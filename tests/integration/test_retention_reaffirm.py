"""Retention never leaves a live fact unreadable: facts in force are restated first."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from ipaddress import IPv4Address
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit.canonical import format_time
from gateway.audit.retention import redact_expired
from gateway.audit.schema import log_entries
from gateway.audit.verify import verify_log
from gateway.egress.mapping import EgressMap
from gateway.http import appkeys
from gateway.regulator.answer import verify_exchange
from gateway.settings import Settings
from tests.conftest import FakeClock
from tests.helpers import bearer, create_peer, opened, ops_token, verified_tenant
from tests.integration.test_regulator_api import REQUEST_ID, Regulator, setup_regulator

Client = TestClient[Any, Any]
RETENTION_DAYS = 30
PUBLIC = "203.0.113.7"
AUTHORISATION = {
    "reference": "PTA/LI/2026/0099", "legal_basis": "PECA 2016 s.32",
    "valid_from": "2026-11-01T00:00:00Z", "valid_until": "2027-03-01T00:00:00Z",
}


@pytest.fixture
async def client(aiohttp_client: Any, make_settings: Any, database_url: str,
                 clock: FakeClock) -> Client:
    settings: Settings = make_settings(database_url, audit={"retention_days": RETENTION_DAYS})
    made: Client = await aiohttp_client(create_app(settings, clock=clock))
    return made


async def run_retention(client: Client, now: datetime) -> Any:
    app = client.app
    result = await redact_expired(
        app[appkeys.DATABASE], now=now, retention_days=RETENTION_DAYS,
        providers=app[appkeys.FACT_PROVIDERS], sequence=app[appkeys.SEQUENCER].drain)
    await app[appkeys.SEQUENCER].drain()
    return result


async def readable(client: Client, event_type: str) -> list[dict[str, Any]]:
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(select(log_entries.c.leaf, log_entries.c.leaf_hash).where(
            log_entries.c.type == event_type, log_entries.c.leaf.is_not(None))
            .order_by(log_entries.c.idx))).all()
    return [opened(client.app[appkeys.DATABASE], r) for r in rows]


async def who_held(reg: Regulator, ip: str, at: datetime) -> Any:
    return await ask(reg, {"kind": "attribution.tunnel_ip", "ip": ip, "at": format_time(at)})


async def ask(reg: Regulator, query: dict[str, Any]) -> Any:
    body = json.dumps({"request_id": REQUEST_ID, "authorisation": AUTHORISATION,
                       "query": query}).encode()
    exchange = await reg.exchange(body)
    result = verify_exchange(exchange, reg.pins, now=reg.clock.now().timestamp())
    assert result.ok, result.reason()
    logged = [e for e in await readable(reg.client, "regulator.query")
              if e["body_sha256"] == exchange.body_sha256]
    # The logged count is exactly what the answer carries, never erased entries.
    assert [e["result_count"] for e in logged] == [len(result.records)]
    return result


async def test_live_peer_stays_attributable_after_its_records_are_erased(
    client: Client, clock: FakeClock
) -> None:
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops, legal_name="Long Haul Ltd")
    live = await create_peer(client, token, name="live")
    gone = await create_peer(client, token, name="gone")
    resp = await client.delete(f"/v1/peers/{gone['id']}", headers=bearer(token))
    assert resp.status == 204
    rotated = await client.post(f"/v1/peers/{live['id']}/rotation", headers=bearer(token))
    live_key = (await rotated.json())["public_key"]
    provisioned_at = clock.now()
    ip = live["tunnel_ips"][0]

    clock.advance(days=RETENTION_DAYS + 1)
    result = await run_retention(client, clock.now())
    assert result.count > 0 and result.reaffirmed == 3  # tenant, live peer, regulator key
    assert await readable(client, "peer.provisioned") == []  # the old records are gone

    [peer_fact] = await readable(client, "peer.reaffirmed")
    assert peer_fact | {"ts": "", "salt": ""} == {
        "v": 1, "type": "peer.reaffirmed", "ts": "", "salt": "", "peer_id": live["id"],
        "tenant_id": tenant["id"], "public_key": live_key, "tunnel_ips": live["tunnel_ips"],
        "gateway_id": "gw1", "held_since": format_time(provisioned_at), "reason": "retention"}
    [tenant_fact] = await readable(client, "tenant.reaffirmed")
    assert (tenant_fact["tenant_id"], tenant_fact["legal_name"], tenant_fact["status"]) == (
        tenant["id"], "Long Haul Ltd", "verified")
    assert tenant_fact["evidence_reference"] == "KYC-2026-001"
    [key_fact] = await readable(client, "regulator.key_reaffirmed")
    assert key_fact["key_id"] == reg.keyid

    # Who holds the address now, and who held it back then: the fresh records answer.
    for at in (clock.now(), provisioned_at + timedelta(hours=1)):
        answer = await who_held(reg, ip, at)
        kinds = sorted(r["event"]["type"] for r in answer.records)
        assert kinds == ["peer.reaffirmed", "tenant.reaffirmed"], kinds
        assert {r["event"].get("peer_id") for r in answer.records} >= {live["id"]}

    # A second run in the same period restates nothing again; the log still verifies.
    again = await run_retention(client, clock.now() + timedelta(hours=1))
    assert again.reaffirmed == 0
    app = client.app
    verifier = app[appkeys.AUDIT_LOG].signer.verifier
    report = await verify_log(app[appkeys.DATABASE], verifier=verifier,
                              origin=app[appkeys.SETTINGS].audit.origin)
    assert report.ok, report.problem

    # A period later the restatements themselves are restated before they are erased.
    clock.advance(days=RETENTION_DAYS + 1)
    later = await run_retention(client, clock.now())
    assert later.reaffirmed == 3
    assert len(await readable(client, "peer.reaffirmed")) == 1
    answer = await who_held(reg, ip, clock.now())
    assert sorted(r["event"]["type"] for r in answer.records) == [
        "peer.reaffirmed", "tenant.reaffirmed"]


async def test_erased_records_are_neither_returned_nor_counted(
    client: Client, clock: FakeClock
) -> None:
    reg, ops = await setup_regulator(client, clock)
    _, token = await verified_tenant(client, ops)
    gone = await create_peer(client, token, name="gone")
    ip = gone["tunnel_ips"][0]
    held_at = clock.now()
    clock.advance(days=RETENTION_DAYS - 1)
    resp = await client.delete(f"/v1/peers/{gone['id']}", headers=bearer(token))
    assert resp.status == 204
    clock.advance(days=2)  # provisioning erased, the release is not yet
    await run_retention(client, clock.now())
    answer = await who_held(reg, ip, held_at + timedelta(hours=1))
    # The release and who the tenant is stay readable; the erased provisioning is not named.
    assert sorted(r["event"]["type"] for r in answer.records) == [
        "address.released", "tenant.reaffirmed"]


async def test_egress_mapping_in_force_is_restated_and_still_attributes(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> None:
    settings: Settings = make_settings(
        database_url, audit={"retention_days": RETENTION_DAYS},
        network={"pools": ("10.100.0.0/24",)},
        egress={"enabled": True, "interface": "eth9", "addresses": (PUBLIC,), "ipv6": "off"})
    client: Client = await aiohttp_client(create_app(settings, clock=clock))
    reg, ops = await setup_regulator(client, clock)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    [configured] = await readable(client, "egress.configured")
    block = EgressMap.from_event(configured).block_of(IPv4Address(peer["tunnel_ips"][0]))
    assert block is not None
    then = clock.now() + timedelta(minutes=1)

    clock.advance(days=RETENTION_DAYS + 1)
    result = await run_retention(client, clock.now())
    assert result.reaffirmed == 4  # tenant, peer, regulator key, egress mapping
    assert await readable(client, "egress.configured") == []
    [restated] = await readable(client, "egress.reaffirmed")
    assert {k: v for k, v in restated.items() if k not in ("type", "ts", "salt")} == {
        **{k: v for k, v in configured.items() if k not in ("type", "ts", "salt", "actor")},
        "configured_at": configured["ts"], "reason": "retention"}

    for at in (then, clock.now()):  # the regulator's own check recomputes the block
        answer = await ask(reg, {"kind": "attribution.egress", "ip": PUBLIC,
                                 "port": block.first_port + 3, "at": format_time(at)})
        assert sorted(r["event"]["type"] for r in answer.records) == [
            "egress.reaffirmed", "peer.reaffirmed", "tenant.reaffirmed"]
        assert answer.answer["derivation"]["tunnel_ip"] == peer["tunnel_ips"][0]
    before = await ask(reg, {"kind": "attribution.egress", "ip": PUBLIC,
                             "port": block.first_port + 3, "at": "2026-11-30T02:00:00Z"})
    assert before.records == []  # before the mapping was configured: nobody


async def test_a_retired_gateways_mapping_is_restated_until_its_retirement_is_past_retention(
    client: Client, clock: FakeClock
) -> None:
    """Restated while the retirement is inside the retention period (records of the peers
    it carried may still be asked about), never after: nothing retained needs it then."""
    ops = await ops_token(client)

    async def register(name: str, address: str) -> str:
        resp = await client.post("/ops/v1/gateways", headers=bearer(ops), json={
            "name": name, "endpoint": f"{name}.vpn.test:51820",
            "egress": {"addresses": [address]}})
        assert resp.status == 201, await resp.text()
        gateway_id: str = (await resp.json())["id"]
        return gateway_id

    async def retire(gateway_id: str) -> None:
        resp = await client.post(f"/ops/v1/gateways/{gateway_id}/retirement",
                                 headers=bearer(ops), json={"reason": "host moved"})
        assert resp.status == 200, await resp.text()

    early = await register("fra-1", "198.51.100.10")
    recent = await register("fra-2", "198.51.100.11")
    await retire(early)  # on day 0
    clock.advance(days=RETENTION_DAYS - 10)
    await retire(recent)  # on day 20

    def restated(events: list[dict[str, Any]]) -> list[str]:
        return [e["gateway_id"] for e in events]

    clock.advance(days=11)  # day 31: both mappings' records are past the cut-off
    await run_retention(client, clock.now())
    assert restated(await readable(client, "egress.reaffirmed")) == [recent]

    clock.advance(days=RETENTION_DAYS + 1)  # day 62: fra-2's retirement is past it too
    await run_retention(client, clock.now())
    assert restated(await readable(client, "egress.reaffirmed")) == []  # erased, not renewed
    async with client.app[appkeys.DATABASE].read() as conn:
        logged = (await conn.execute(select(log_entries.c.idx).where(
            log_entries.c.type == "egress.reaffirmed"))).all()
    assert len(logged) == 1
