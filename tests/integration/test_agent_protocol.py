"""The agent protocol over a real socket on SQLite and PostgreSQL: desired state by revision
(full, deltas, long-poll), observation batches written exactly once, and an agent token
that reaches nothing but its own gateway."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from gateway.wireguard.keys import public_key_of, to_base64
from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant

AGENT_KEY = to_base64(public_key_of(bytes([5] * 32)))


async def register(client: Any, ops: str, name: str) -> dict[str, Any]:
    resp = await client.post(
        "/ops/v1/gateways",
        json={"name": name, "endpoint": f"{name}.test:51820"},
        headers=bearer(ops),
    )
    assert resp.status == 201, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def state(client: Any, gw: dict[str, Any], revision: int = 0, wait: int = 0) -> Any:
    resp = await client.get(
        f"/agent/v1/gateways/{gw['id']}/state?revision={revision}&wait={wait}",
        headers=bearer(gw["agent_token"]),
    )
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    return await resp.json()


async def entries(client: Any, ops: str, kind: str) -> list[dict[str, Any]]:
    await client.app[appkeys.SEQUENCER].drain()
    resp = await client.get(f"/ops/v1/audit?type={kind}&limit=500", headers=bearer(ops))
    return [i["event"] for i in (await resp.json())["items"]]


def started(public_key: str, at: str = "2026-03-01T10:00:05Z") -> dict[str, Any]:
    return {
        "type": "session.started",
        "public_key": public_key,
        "at": at,
        "endpoint": "203.0.113.5:40000",
        "first_handshake": "2026-03-01T10:00:00Z",
    }


def ended(public_key: str) -> dict[str, Any]:
    return {
        "type": "session.ended",
        "public_key": public_key,
        "at": "2026-03-01T10:30:00Z",
        "endpoint": "203.0.113.5:40000",
        "first_handshake": "2026-03-01T10:00:00Z",
        "last_handshake": "2026-03-01T10:20:00Z",
        "rx_bytes": 10,
        "tx_bytes": 20,
    }


async def upload(client: Any, gw: dict[str, Any], body: Any, token: str | None = None) -> Any:
    return await client.post(
        f"/agent/v1/gateways/{gw['id']}/observations",
        json=body,
        headers=bearer(token or gw["agent_token"]),
    )


async def test_desired_state_full_then_deltas_then_long_poll(client: Any) -> None:
    ops = await ops_token(client)
    gw = await register(client, ops, "fra")
    tenant, token = await verified_tenant(client, ops)
    first = await state(client, gw)
    assert first["full"] and first["peers"] == [] and first["gateway"]["id"] == gw["id"]
    assert first["gateway"]["pools"] == gw["pools"]

    a = await create_peer(client, token, gateway_id=gw["id"], name="a", preshared_key=True)
    await create_peer(client, token, gateway_id="gw1", name="elsewhere")
    delta = await state(client, gw, first["revision"])
    assert not delta["full"] and delta["revision"] > first["revision"]
    assert [p["peer_id"] for p in delta["peers"]] == [a["id"]]
    assert delta["peers"][0]["preshared_key"] and delta["peers"][0]["tunnel_ips"] == a["tunnel_ips"]
    same = await state(client, gw, delta["revision"])
    assert (same["revision"], same["peers"], same["removed"]) == (delta["revision"], [], [])

    # A long-poll returns as soon as the tenant is suspended: the peer leaves the state.
    poll = asyncio.create_task(state(client, gw, delta["revision"], wait=50))
    await asyncio.sleep(0)
    resp = await client.post(
        f"/ops/v1/tenants/{tenant['id']}/suspension", json={"reason": "audit"}, headers=bearer(ops)
    )
    assert resp.status == 200
    # Only a wake can end the poll this early: it would otherwise hold for 50 s.
    woken = await asyncio.wait_for(poll, 25)
    assert woken["removed"] == [a["id"]] and woken["peers"] == []
    # An agent ahead of the control plane (restored database) gets the full state again.
    ahead = await state(client, gw, woken["revision"] + 100)
    assert ahead["full"] and ahead["peers"] == []


async def test_batches_are_written_once_and_refused_batches_not_at_all(client: Any) -> None:
    ops = await ops_token(client)
    gw, other = await register(client, ops, "fra"), await register(client, ops, "ams")
    _tenant, token = await verified_tenant(client, ops)
    mine = await create_peer(client, token, gateway_id=gw["id"], name="mine")
    theirs = await create_peer(client, token, gateway_id=other["id"], name="theirs")
    batch = {
        "batch_id": "batch-0001",
        "events": [started(mine["public_key"]), ended(mine["public_key"])],
    }
    resp = await upload(client, gw, batch)
    assert (await resp.json()) == {"batch_id": "batch-0001", "accepted": 2, "duplicate": False}
    again = await upload(client, gw, batch)
    assert (await again.json())["duplicate"] is True
    logged = await entries(client, ops, "session.started") + await entries(
        client, ops, "session.ended"
    )
    assert len(logged) == 2
    assert all(e["gateway_id"] == gw["id"] and e["peer_id"] == mine["id"] for e in logged)
    assert logged[0]["observed_at"] == "2026-03-01T10:00:05Z"

    bad = [
        (
            {"batch_id": "x", "events": [started(mine["public_key"])]},
            400,
            "invalid-input",
            "batch_id",
        ),
        ({"batch_id": "batch-0002", "events": []}, 400, "invalid-input", "events"),
        (
            {
                "batch_id": "batch-0002",
                "events": [{**started(mine["public_key"]), "endpoint": "nowhere"}],
            },
            400,
            "invalid-input",
            "events[0].endpoint",
        ),
        (
            {
                "batch_id": "batch-0002",
                "events": [
                    started(mine["public_key"]),
                    {"type": "peer.revoked", "peer_id": mine["id"]},
                ],
            },
            403,
            "event-not-allowed",
            "events[1].type",
        ),
        (
            {
                "batch_id": "batch-0002",
                "events": [started(mine["public_key"]), started(theirs["public_key"])],
            },
            403,
            "event-not-allowed",
            "another gateway",
        ),
        (
            {"batch_id": "batch-0002", "events": [started(mine["public_key"]), started(AGENT_KEY)]},
            422,
            "unknown-peer",
            "events[1].public_key",
        ),
        (
            {"batch_id": "batch-0002", "events": [started(mine["public_key"])], "extra": 1},
            400,
            "invalid-input",
            "extra",
        ),
    ]
    for body, status, code, hint in bad:
        await assert_problem(await upload(client, gw, body), status, code, detail_has=hint)
    assert len(await entries(client, ops, "session.started")) == 1
    # The refused id was never recorded: the agent can send a corrected batch under it.
    fixed = await upload(
        client,
        gw,
        {"batch_id": "batch-0002", "events": [started(mine["public_key"], "2026-03-01T11:00:00Z")]},
    )
    assert (await fixed.json())["accepted"] == 1


async def test_agent_tokens_reach_only_their_own_gateway(client: Any) -> None:
    ops = await ops_token(client)
    gw, other = await register(client, ops, "fra"), await register(client, ops, "ams")
    _tenant, token = await verified_tenant(client, ops)
    theirs = await create_peer(client, token, gateway_id=other["id"], name="theirs")
    mine_token = bearer(gw["agent_token"])
    for method, path, body in [
        ("GET", f"/agent/v1/gateways/{other['id']}/state", None),
        (
            "POST",
            f"/agent/v1/gateways/{other['id']}/observations",
            {"batch_id": "batch-0001", "events": [started(theirs["public_key"])]},
        ),
        (
            "POST",
            f"/agent/v1/gateways/{other['id']}/status",
            {"interface": {"public_key": AGENT_KEY}},
        ),
    ]:
        resp = await client.request(method, path, json=body, headers=mine_token)
        await assert_problem(resp, 403, "other-gateway", detail_has=gw["id"])
    resp = await client.post(
        f"/agent/v1/gateways/{gw['id']}/status",
        headers=mine_token,
        json={
            "peers": [
                {
                    "public_key": theirs["public_key"],
                    "endpoint": None,
                    "latest_handshake": None,
                    "rx_bytes": 0,
                    "tx_bytes": 0,
                    "connected": False,
                }
            ]
        },
    )
    await assert_problem(resp, 403, "event-not-allowed", detail_has="another gateway")
    for path in ("/ops/v1/tenants", "/v1/peers", f"/ops/v1/gateways/{gw['id']}"):
        await assert_problem(await client.get(path, headers=mine_token), 403, "wrong-role")
    for who in (ops, token):
        resp = await client.get(f"/agent/v1/gateways/{gw['id']}/state", headers=bearer(who))
        await assert_problem(resp, 403, "wrong-role", detail_has="agent token")
    assert await entries(client, ops, "session.started") == []
    shown = await (await client.get(f"/ops/v1/gateways/{other['id']}", headers=bearer(ops))).json()
    assert shown["public_key"] is None

    # Revocable like any token: the next request is refused.
    token_id = gw["agent_token_id"]
    assert (await client.delete(f"/ops/v1/tokens/{token_id}", headers=bearer(ops))).status == 200
    resp = await client.get(f"/agent/v1/gateways/{gw['id']}/state", headers=mine_token)
    await assert_problem(resp, 401, "invalid-token")


async def test_status_reports_the_interface_key_and_peer_connections(client: Any) -> None:
    ops = await ops_token(client)
    gw = await register(client, ops, "fra")
    _tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, gateway_id=gw["id"], name="p")
    resp = await client.post(
        f"/agent/v1/gateways/{gw['id']}/status",
        headers=bearer(gw["agent_token"]),
        json={
            "interface": {
                "public_key": AGENT_KEY,
                "listen_port": 51820,
                "ok": True,
                "detail": "userspace interface in sync",
            },
            "peers": [
                {
                    "public_key": peer["public_key"],
                    "endpoint": "203.0.113.5:40000",
                    "latest_handshake": "2026-03-01T10:00:00Z",
                    "rx_bytes": 5,
                    "tx_bytes": 6,
                    "connected": True,
                }
            ],
        },
    )
    assert resp.status == 204, await resp.text()
    shown = await (await client.get(f"/ops/v1/gateways/{gw['id']}", headers=bearer(ops))).json()
    assert shown["public_key"] == AGENT_KEY and shown["interface"]["ok"]
    assert shown["last_contact_at"] and shown["live_sessions"] == 1
    got = await (await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))).json()
    assert got["connection"]["connected"] and got["connection"]["rx_bytes"] == 5
    conf = await (await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))).text()
    assert f"PublicKey = {AGENT_KEY}" in conf and "Endpoint = fra.test:51820" in conf
    resp = await client.post(
        f"/agent/v1/gateways/{gw['id']}/status",
        headers=bearer(gw["agent_token"]),
        json={"interface": {"public_key": "short"}},
    )
    await assert_problem(resp, 400, "invalid-input", detail_has="interface.public_key")


@pytest.mark.postgres
async def test_a_change_through_one_process_wakes_a_long_poll_on_another(
    aiohttp_client: Any, make_settings: Any, postgres_url: str
) -> None:
    settings: Settings = make_settings(postgres_url)
    one = await aiohttp_client(create_app(settings))
    two = await aiohttp_client(create_app(settings))
    ops = await ops_token(one)
    gw = await register(one, ops, "fra")
    _tenant, token = await verified_tenant(one, ops)
    first = await state(two, gw)
    poll = asyncio.create_task(state(two, gw, first["revision"], wait=50))
    await asyncio.sleep(0.2)  # let the poll reach its wait (the result does not depend on it)
    peer = await create_peer(one, token, gateway_id=gw["id"])
    woken = await asyncio.wait_for(poll, 25)  # woken by NOTIFY, long before its 50 s
    assert [p["peer_id"] for p in woken["peers"]] == [peer["id"]]


async def test_openapi_documents_the_agent_protocol(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    state = doc["paths"]["/agent/v1/gateways/{gateway_id}/state"]["get"]
    assert state["tags"] == ["agent"] and state["security"] == [{"agentToken": []}]
    assert {p["name"] for p in state["parameters"]} == {"gateway_id", "revision", "wait"}
    upload = doc["paths"]["/agent/v1/gateways/{gateway_id}/observations"]["post"]
    schema = upload["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["batch_id", "events"]
    assert schema["properties"]["events"]["items"]["properties"]["type"]["enum"] == [
        "session.started", "session.roamed", "session.ended"]
    assert "/ops/v1/gateways/{gateway_id}/retirement" in doc["paths"]
