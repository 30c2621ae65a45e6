"""A suspended tenant gets no configs (they hold preshared keys) and no one-time links."""

from __future__ import annotations

from typing import Any

from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant


async def suspend(client: Any, ops: str, tenant_id: str) -> None:
    resp = await client.post(f"/ops/v1/tenants/{tenant_id}/suspension",
                             json={"reason": "unpaid invoice"}, headers=bearer(ops))
    assert resp.status == 200, await resp.text()


async def test_suspended_tenant_gets_no_config_and_no_links(client: Any) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, preshared_key=True)
    path = f"/v1/peers/{peer['id']}"
    resp = await client.post(f"{path}/links", headers=bearer(token))
    assert resp.status == 201
    url = (await resp.json())["url"]
    link = url[url.index("/links/"):]

    await suspend(client, ops, tenant["id"])
    for fmt in ("conf", "json", "qr.svg"):
        resp = await client.get(f"{path}/config?format={fmt}", headers=bearer(token))
        doc = await assert_problem(resp, 403, "tenant-suspended", detail_has="suspended")
        assert doc["tenant_status"] == "suspended"
        assert "PresharedKey" not in doc["detail"]
    resp = await client.post(f"{path}/links", headers=bearer(token))
    await assert_problem(resp, 403, "tenant-suspended", detail_has="config links")
    resp = await client.get(link)
    await assert_problem(resp, 403, "tenant-suspended", detail_has="suspended")
    # Reading its own peers stays allowed; that view only says whether a PSK exists.
    resp = await client.get(path, headers=bearer(token))
    assert resp.status == 200 and (await resp.json())["preshared_key"] is True

    # The refused redemption did not use the link up: after reinstatement it works once.
    resp = await client.post(f"/ops/v1/tenants/{tenant['id']}/reinstatement",
                             json={"reason": "paid"}, headers=bearer(ops))
    assert resp.status == 200
    resp = await client.get(link)
    assert resp.status == 200 and "PresharedKey = " in await resp.text()
    resp = await client.get(link)
    await assert_problem(resp, 410, "link-unavailable")
    resp = await client.get(f"{path}/config", headers=bearer(token))
    assert resp.status == 200


async def test_terminated_tenant_links_stop_working(client: Any) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    resp = await client.post(f"/v1/peers/{peer['id']}/links", headers=bearer(token))
    url = (await resp.json())["url"]
    resp = await client.post(f"/ops/v1/tenants/{tenant['id']}/termination",
                             json={"reason": "contract ended"}, headers=bearer(ops))
    assert resp.status == 200
    resp = await client.get(url[url.index("/links/"):])
    await assert_problem(resp, 410, "link-unavailable")
    resp = await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))
    await assert_problem(resp, 401, "invalid-token")
