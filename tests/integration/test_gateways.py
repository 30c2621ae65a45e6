"""Gateways as a resource over a real socket, on SQLite and PostgreSQL: registration with
pools that never overlap and logged egress, peers placed on a gateway and configured for
it, agent tokens bound to one gateway, retirement only when empty."""

from __future__ import annotations

import ipaddress
from typing import Any

from gateway.http import appkeys
from provisioning import gateways
from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant

AGENT_KEY = "mFbhTf5JrBnVRtj6kvHBM01e9RJxyHGVTvBbqL1rsmk="


async def logged(client: Any, ops: str, kind: str) -> list[dict[str, Any]]:
    await client.app[appkeys.SEQUENCER].drain()
    resp = await client.get(f"/ops/v1/audit?type={kind}", headers=bearer(ops))
    assert resp.status == 200, await resp.text()
    return [i["event"] for i in (await resp.json())["items"]]


async def register(client: Any, ops: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "fra-1", "endpoint": "fra-1.vpn.test:51820", **fields}
    resp = await client.post("/ops/v1/gateways", json=body, headers=bearer(ops))
    assert resp.status == 201, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def report_key(client: Any, gateway_id: str, public_key: str = AGENT_KEY) -> None:
    async with client.app[appkeys.DATABASE].write() as conn:
        await gateways.record_contact(
            conn, gateway_id, now=client.app[appkeys.CLOCK].now(), public_key=public_key
        )


async def test_registered_gateway_gets_its_own_pools_egress_log_and_agent_token(
    client: Any,
) -> None:
    ops = await ops_token(client)
    gw = await register(
        client, ops, egress={"addresses": ["198.51.100.10"], "block_size": "auto"}
    )
    assert gw["agent_token"].startswith("vgw_a_") and gw["status"] == "active"
    default_id = client.app[appkeys.SETTINGS].network.gateway_id
    resp = await client.get("/ops/v1/gateways", headers=bearer(ops))
    items = (await resp.json())["items"]
    assert {g["id"] for g in items} == {default_id, gw["id"]}
    default = next(g for g in items if g["id"] == default_id)
    assert default["default"] and default["public_key"]
    for mine in gw["pools"]:
        for theirs in default["pools"]:
            a, b = ipaddress.ip_network(mine), ipaddress.ip_network(theirs)
            assert a.version != b.version or not a.overlaps(b)
    second = await register(client, ops, name="ams-1", endpoint="ams.vpn.test:51820")
    assert set(second["pools"]).isdisjoint(gw["pools"])

    registered = await logged(client, ops, "gateway.registered")
    assert [e["gateway_id"] for e in registered] == [gw["id"], second["id"]]
    egress = await logged(client, ops, "egress.configured")
    assert [e["gateway_id"] for e in egress] == [gw["id"]]
    assert egress[0]["addresses"] == ["198.51.100.10"]
    assert egress[0]["pool"] == next(p for p in gw["pools"] if "." in p)
    issued = await logged(client, ops, "token.issued")
    assert any(e.get("gateway_id") == gw["id"] and e["role"] == "agent" for e in issued)

    shown = await (await client.get(f"/ops/v1/gateways/{gw['id']}", headers=bearer(ops))).json()
    assert shown["active_peers"] == 0 and shown["live_sessions"] == 0
    assert shown["egress_capacity"]["blocks"] >= 510
    assert shown["public_key"] is None and shown["last_contact_at"] is None
    assert "agent_token" not in shown and shown["tokens"][0]["role"] == "agent"


async def test_bad_registrations_say_what_to_fix_and_write_nothing(client: Any) -> None:
    ops = await ops_token(client)
    cases = [
        ({"name": "x", "endpoint": "no-port"}, 400, "invalid-input", "endpoint"),
        ({"name": "bad name!", "endpoint": "a.test:1"}, 400, "invalid-input", "name"),
        ({"name": "x", "endpoint": "a.test:1", "pool": "10.100.0.0/24"}, 409, "pool-overlap",
         "overlaps"),
        ({"name": "x", "endpoint": "a.test:1", "pool": "fd00::/64"}, 400, "invalid-input",
         "IPv4"),
        ({"name": "x", "endpoint": "a.test:1", "egress": {"addresses": ["nope"]}}, 400,
         "invalid-input", "egress"),
        ({"name": "x", "endpoint": "a.test:1", "egress": {"addresses": ["198.51.100.1"],
                                                           "colour": "red"}},
         400, "invalid-input", "egress.colour"),
        ({"name": "x", "endpoint": "a.test:1", "egress": {}}, 400, "invalid-input",
         "egress.addresses"),
        ({"name": "x", "endpoint": "a.test:1", "egress": {"addresses": ["198.51.100.1"],
                                                           "block_size": 60000}},
         400, "invalid-input", "egress"),
        ({"name": "x", "endpoint": "a.test:1", "region": "eu"}, 400, "invalid-input", "region"),
    ]
    for body, status, code, hint in cases:
        resp = await client.post("/ops/v1/gateways", json=body, headers=bearer(ops))
        await assert_problem(resp, status, code, detail_has=hint)
    await register(client, ops, name="taken")
    resp = await client.post(
        "/ops/v1/gateways", json={"name": "taken", "endpoint": "b.test:1"}, headers=bearer(ops)
    )
    await assert_problem(resp, 409, "gateway-unavailable", detail_has="name")
    items = (await (await client.get("/ops/v1/gateways", headers=bearer(ops))).json())["items"]
    assert len(items) == 2
    assert len(await logged(client, ops, "gateway.registered")) == 1
    assert await logged(client, ops, "egress.configured") == []


async def test_peers_live_on_one_gateway_and_their_config_names_it(client: Any) -> None:
    ops = await ops_token(client)
    gw = await register(client, ops, pool="10.77.0.0/24", pool6="fd00:77::/64")
    _tenant, token = await verified_tenant(client, ops)

    peer = await create_peer(client, token, gateway_id=gw["id"], name="fra-laptop")
    assert peer["gateway_id"] == gw["id"]
    assert peer["tunnel_ips"] == ["10.77.0.2", "fd00:77::2"]
    provisioned = await logged(client, ops, "peer.provisioned")
    assert provisioned[-1]["gateway_id"] == gw["id"]
    # No key reported by an agent yet: no config that could not work.
    resp = await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))
    await assert_problem(resp, 409, "gateway-unavailable", detail_has="vpngw agent")
    await report_key(client, gw["id"])
    conf = await (await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))).text()
    assert f"PublicKey = {AGENT_KEY}" in conf
    assert "Endpoint = fra-1.vpn.test:51820" in conf

    home = await create_peer(client, token, gateway_id="gw1", name="home")
    assert home["gateway_id"] == "gw1" and home["tunnel_ips"][0].startswith("10.100.0.")
    conf = await (await client.get(f"/v1/peers/{home['id']}/config", headers=bearer(token))).text()
    assert "Endpoint = vpn.test:51820" in conf

    resp = await client.post(
        "/v1/peers", json={"name": "n", "gateway_id": "nowhere"}, headers=bearer(token)
    )
    await assert_problem(resp, 400, "invalid-input", detail_has="gateway_id")
    shown = await (await client.get(f"/ops/v1/gateways/{gw['id']}", headers=bearer(ops))).json()
    assert shown["active_peers"] == 1 and shown["public_key"] == AGENT_KEY


async def test_unplaced_peers_go_to_the_gateway_with_most_free_addresses(client: Any) -> None:
    ops = await ops_token(client)
    _tenant, token = await verified_tenant(client, ops)
    first = await create_peer(client, token, name="a")
    assert first["gateway_id"] == "gw1"  # the only gateway: single node as before
    big = await register(client, ops, name="big", pool="10.88.0.0/22")
    second = await create_peer(client, token, name="b")
    assert second["gateway_id"] == big["id"]


async def test_retirement_waits_for_an_empty_gateway_and_revokes_its_agent_tokens(
    client: Any,
) -> None:
    ops = await ops_token(client)
    gw = await register(client, ops)
    _tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, gateway_id=gw["id"])
    url = f"/ops/v1/gateways/{gw['id']}/retirement"
    resp = await client.post(url, json={"reason": "host moved"}, headers=bearer(ops))
    await assert_problem(resp, 409, "gateway-unavailable", detail_has="1 active peer")
    assert await logged(client, ops, "gateway.retired") == []

    await client.delete(f"/v1/peers/{peer['id']}", headers=bearer(token))
    resp = await client.post(url, json={"reason": "host moved"}, headers=bearer(ops))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "retired"
    retired = await logged(client, ops, "gateway.retired")
    assert [(e["gateway_id"], e["reason"]) for e in retired] == [(gw["id"], "host moved")]
    revoked = await logged(client, ops, "token.revoked")
    assert revoked and revoked[-1]["role"] == "agent"
    resp = await client.post(url, json={"reason": "again"}, headers=bearer(ops))
    await assert_problem(resp, 409, "gateway-unavailable", detail_has="already retired")
    resp = await client.post(
        "/v1/peers", json={"name": "n", "gateway_id": gw["id"]}, headers=bearer(token)
    )
    await assert_problem(resp, 409, "gateway-unavailable", detail_has="retired")
    resp = await client.post(
        "/ops/v1/gateways/gw1/retirement", json={"reason": "x"}, headers=bearer(ops)
    )
    await assert_problem(resp, 409, "gateway-unavailable", detail_has="default gateway")


async def test_agent_tokens_cannot_use_ops_or_tenant_routes(client: Any) -> None:
    ops = await ops_token(client)
    gw = await register(client, ops)
    agent = bearer(gw["agent_token"])
    for method, path in [("GET", "/ops/v1/gateways"), ("GET", "/ops/v1/tenants"),
                         ("GET", "/v1/peers"), ("POST", "/ops/v1/gateways")]:
        resp = await client.request(method, path, headers=agent, json={})
        await assert_problem(resp, 403, "wrong-role", detail_has="agent token")


async def test_ops_can_set_a_tenants_default_gateway(client: Any) -> None:
    ops = await ops_token(client)
    small = await register(client, ops, name="small", pool="10.66.0.0/28")
    await register(client, ops, name="big", pool="10.88.0.0/22")
    tenant, token = await verified_tenant(client, ops)
    url = f"/ops/v1/tenants/{tenant['id']}/default-gateway"
    resp = await client.put(url, json={"gateway_id": small["id"]}, headers=bearer(ops))
    assert (await resp.json())["default_gateway_id"] == small["id"]
    assert (await create_peer(client, token, name="a"))["gateway_id"] == small["id"]
    resp = await client.put(url, json={"gateway_id": "nowhere"}, headers=bearer(ops))
    await assert_problem(resp, 400, "invalid-input", detail_has="gateway_id")
    resp = await client.put(url, json={}, headers=bearer(ops))
    await assert_problem(resp, 400, "invalid-input", detail_has="gateway_id")
    resp = await client.put(url, json={"gateway_id": None}, headers=bearer(ops))
    assert (await resp.json())["default_gateway_id"] is None
    assert (await create_peer(client, token, name="b"))["gateway_id"] != small["id"]
