"""Provisioning over real HTTP on SQLite and PostgreSQL: the flows a provider and tenant use."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from gateway.audit.schema import log_entries, outbox
from gateway.http import appkeys
from provisioning.keys import generate_key_pair
from tests.helpers import (
    assert_problem,
    bearer,
    create_peer,
    create_tenant,
    opened,
    ops_token,
    verified_tenant,
)


async def outbox_events(client: Any) -> list[dict[str, Any]]:
    """Every event recorded so far, in order: whatever is still in the outbox is drained first."""
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        assert await conn.scalar(select(func.count()).select_from(outbox)) == 0
        rows = (await conn.execute(select(log_entries.c.leaf, log_entries.c.leaf_hash)
                                    .order_by(log_entries.c.idx))).all()
    return [opened(client.app[appkeys.DATABASE], r) for r in rows]


async def test_tenant_lifecycle_records_who_when_why(client: Any) -> None:
    ops = await ops_token(client)
    tenant = await create_tenant(client, ops)
    assert tenant["status"] == "pending"
    tid = tenant["id"]
    for path, body, status in [
        ("verification", {"evidence_reference": "KYC-1", "note": "papers checked"}, "verified"),
        ("suspension", {"reason": "unpaid invoice"}, "suspended"),
        ("reinstatement", {"reason": "paid"}, "verified"),
        ("termination", {"reason": "contract ended"}, "terminated"),
    ]:
        resp = await client.post(f"/ops/v1/tenants/{tid}/{path}", json=body, headers=bearer(ops))
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == status
    resp = await client.get(f"/ops/v1/tenants/{tid}", headers=bearer(ops))
    doc = await resp.json()
    assert [h["to"] for h in doc["history"]] == [
        "pending",
        "verified",
        "suspended",
        "verified",
        "terminated",
    ]
    assert doc["history"][1]["evidence_reference"] == "KYC-1"
    assert doc["history"][2]["reason"] == "unpaid invoice"
    assert all(h["actor"].startswith("token:") and h["at"] for h in doc["history"])
    types = [e["type"] for e in await outbox_events(client)]
    assert (
        types[-5:]
        == [
            "tenant.created",
            "tenant.verified",
            "tenant.suspended",
            "tenant.reinstated",
            "tenant.terminated",
        ][-5:]
    )


async def test_illegal_transitions_are_409_and_change_nothing(client: Any) -> None:
    ops = await ops_token(client)
    tid = (await create_tenant(client, ops))["id"]
    before = await outbox_events(client)
    for path in ("suspension", "reinstatement"):
        resp = await client.post(
            f"/ops/v1/tenants/{tid}/{path}", json={"reason": "x"}, headers=bearer(ops)
        )
        await assert_problem(resp, 409, "illegal-transition", detail_has="pending")
    await client.post(
        f"/ops/v1/tenants/{tid}/termination", json={"reason": "rejected"}, headers=bearer(ops)
    )
    resp = await client.post(
        f"/ops/v1/tenants/{tid}/verification", json={"evidence_reference": "K"}, headers=bearer(ops)
    )
    await assert_problem(resp, 409, "illegal-transition", detail_has="final")
    resp = await client.get(f"/ops/v1/tenants/{tid}", headers=bearer(ops))
    assert (await resp.json())["status"] == "terminated"
    assert len(await outbox_events(client)) == len(before) + 1


async def test_peer_with_client_key_and_its_configs(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    pair = generate_key_pair()
    peer = await create_peer(
        client, token, name="alice laptop", public_key=pair.public_key, preshared_key=True
    )
    assert "private_key" not in peer and "config" not in peer
    assert peer["public_key"] == pair.public_key
    assert peer["tunnel_ips"] == ["10.100.0.2", "fd00:100::2"]
    resp = await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))
    conf = await resp.text()
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    gw_pub = client.app[appkeys.KEYS].wireguard_public
    assert "PrivateKey = " not in conf.replace("# PrivateKey", "")
    assert "Address = 10.100.0.2/32, fd00:100::2/128" in conf
    assert "DNS = 9.9.9.9, 149.112.112.112" in conf
    assert f"PublicKey = {gw_pub}" in conf and "PresharedKey = " in conf
    assert "Endpoint = vpn.test:51820" in conf and "PersistentKeepalive = 25" in conf
    resp = await client.get(f"/v1/peers/{peer['id']}/config?format=json", headers=bearer(token))
    doc = await resp.json()
    assert doc["peer"]["public_key"] == gw_pub and "private_key" not in doc["interface"]
    resp = await client.get(f"/v1/peers/{peer['id']}/config?format=qr.svg", headers=bearer(token))
    assert resp.content_type == "image/svg+xml" and b"<svg" in await resp.read()
    resp = await client.get(f"/v1/peers/{peer['id']}/config?format=qr.png", headers=bearer(token))
    assert (await resp.read()).startswith(b"\x89PNG\r\n\x1a\n")
    resp = await client.get(f"/v1/peers/{peer['id']}/config?format=pdf", headers=bearer(token))
    await assert_problem(resp, 400, "invalid-input", detail_has="format")


async def test_server_generated_key_is_returned_once_and_never_stored(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    private_key = peer["private_key"]
    assert f"PrivateKey = {private_key}" in peer["config"]
    resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))
    assert private_key not in await resp.text()
    resp = await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))
    assert private_key not in await resp.text()
    for leaf in await outbox_events(client):
        assert private_key not in json.dumps(leaf)
    db_path = client.app[appkeys.SETTINGS].database_url
    if db_path.startswith("sqlite"):
        db_file = Path(db_path.split("///", 1)[1])
        raw = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
        assert private_key.encode() not in raw
        assert base64.b64decode(private_key) not in raw


async def test_peer_events_are_complete_and_ordered(client: Any) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    new_key = generate_key_pair().public_key
    resp = await client.post(
        f"/v1/peers/{peer['id']}/rotation", json={"public_key": new_key}, headers=bearer(token)
    )
    assert resp.status == 200 and (await resp.json())["public_key"] == new_key
    resp = await client.delete(f"/v1/peers/{peer['id']}", headers=bearer(token))
    assert resp.status == 204
    events = await outbox_events(client)
    assert [e["type"] for e in events] == [
        "token.issued",
        "tenant.created",
        "tenant.verified",
        "token.issued",
        "peer.provisioned",
        "peer.key_rotated",
        "peer.revoked",
        "address.released",
        "address.released",
    ]
    provisioned = events[4]
    assert provisioned["peer_id"] == peer["id"] and provisioned["tenant_id"] == tenant["id"]
    assert provisioned["tunnel_ips"] == peer["tunnel_ips"]
    assert provisioned["gateway_id"] == "gw1" and provisioned["v"] == 1
    assert len(base64.b64decode(provisioned["salt"])) == 16
    assert provisioned["ts"].endswith("Z")
    assert events[5]["old_public_key"] == peer["public_key"]
    assert {e["address"] for e in events[7:]} == set(peer["tunnel_ips"])


async def test_one_time_link_works_once(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, public_key=generate_key_pair().public_key)
    resp = await client.post(
        f"/v1/peers/{peer['id']}/links", json={"ttl_seconds": 600}, headers=bearer(token)
    )
    assert resp.status == 201
    link = await resp.json()
    path = "/links/" + link["url"].rsplit("/links/", 1)[1]
    assert len(path.rsplit("/", 1)[1]) >= 22  # >= 128 bits of base64url
    first = await client.get(path)
    assert first.status == 200 and "[Peer]" in await first.text()
    await assert_problem(await client.get(path), 410, "link-unavailable", detail_has="new link")


async def test_rotation_with_server_key_returns_new_config(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, public_key=generate_key_pair().public_key)
    resp = await client.post(f"/v1/peers/{peer['id']}/rotation", headers=bearer(token))
    doc = await resp.json()
    assert resp.status == 200 and doc["private_key"] and doc["public_key"] != peer["public_key"]
    assert f"PrivateKey = {doc['private_key']}" in doc["config"]
    assert doc["tunnel_ips"] == peer["tunnel_ips"]


async def test_concurrent_provisioning_never_shares_an_address(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops, max_peers=1000)
    results = await asyncio.gather(
        *(
            client.post("/v1/peers", json={"name": f"d{i}"}, headers=bearer(token))
            for i in range(60)
        )
    )
    docs = [await r.json() for r in results]
    assert all(r.status == 201 for r in results), docs[:3]
    ips = [ip for d in docs for ip in d["tunnel_ips"]]
    assert len(ips) == len(set(ips)) == 120


async def test_suspension_and_termination_stop_provisioning(client: Any) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    await client.post(
        f"/ops/v1/tenants/{tenant['id']}/suspension", json={"reason": "audit"}, headers=bearer(ops)
    )
    resp = await client.post("/v1/peers", json={"name": "x"}, headers=bearer(token))
    await assert_problem(resp, 403, "tenant-not-verified", detail_has="suspended")
    await client.post(
        f"/ops/v1/tenants/{tenant['id']}/termination", json={"reason": "fraud"}, headers=bearer(ops)
    )
    resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))
    await assert_problem(resp, 401, "invalid-token")
    async with client.app[appkeys.DATABASE].read() as conn:
        from provisioning.peers import get_peer

        assert (await get_peer(conn, None, peer["id"])).status == "revoked"
    types = [e["type"] for e in await outbox_events(client)]
    assert types[-5:] == [
        "tenant.terminated",
        "peer.revoked",
        "address.released",
        "address.released",
        "token.revoked",
    ]


async def test_lists_paginate(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    made = [(await create_peer(client, token, name=f"p{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    after = ""
    while True:
        resp = await client.get(
            f"/v1/peers?limit=2{'&after=' + after if after else ''}", headers=bearer(token)
        )
        doc = await resp.json()
        seen += [p["id"] for p in doc["items"]]
        if not doc["next"]:
            break
        after = doc["next"]
    assert seen == made
    resp = await client.get("/ops/v1/tenants?limit=1&status=verified", headers=bearer(ops))
    assert len((await resp.json())["items"]) == 1


async def test_count_of_stored_rows_unchanged_by_refusals(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops, max_peers=1)
    await create_peer(client, token)
    before = await outbox_events(client)
    resp = await client.post("/v1/peers", json={"name": "second"}, headers=bearer(token))
    await assert_problem(resp, 409, "quota-exceeded", detail_has="1 of 1")
    assert await outbox_events(client) == before
