"""Headers on every response: nosniff always; no-store on anything carrying a secret."""

from __future__ import annotations

from typing import Any

from tests.helpers import bearer, create_peer, ops_token, verified_tenant


def _secret_safe(resp: Any) -> None:
    assert resp.headers.get("Cache-Control") == "no-store", (resp.url, dict(resp.headers))
    assert resp.headers.get("X-Content-Type-Options") == "nosniff", resp.url


async def test_responses_carrying_secrets_are_never_stored(client: Any) -> None:
    ops = await ops_token(client)
    tenant, _ = await verified_tenant(client, ops)
    resp = await client.post(f"/ops/v1/tenants/{tenant['id']}/tokens", headers=bearer(ops))
    assert resp.status == 201
    _secret_safe(resp)
    token = (await resp.json())["token"]

    resp = await client.post("/v1/peers", json={"name": "kiosk"}, headers=bearer(token))
    assert resp.status == 201 and "private_key" in await resp.json()
    _secret_safe(resp)
    peer = await create_peer(client, token, name="laptop", preshared_key=True)
    resp = await client.get(f"/v1/peers/{peer['id']}/config", headers=bearer(token))
    assert resp.status == 200
    _secret_safe(resp)
    resp = await client.post(f"/v1/peers/{peer['id']}/rotation", headers=bearer(token))
    assert resp.status == 200
    _secret_safe(resp)
    resp = await client.post(f"/v1/peers/{peer['id']}/links", headers=bearer(token))
    assert resp.status == 201
    _secret_safe(resp)
    link = (await resp.json())["url"].split("/links/")[1]
    resp = await client.get(f"/links/{link}")
    assert resp.status == 200
    _secret_safe(resp)
    # Anything without a caching rule of its own is not stored either (tenant data).
    resp = await client.get("/v1/peers", headers=bearer(token))
    _secret_safe(resp)


async def test_every_response_says_nosniff(client: Any) -> None:
    ops = await ops_token(client)
    cases = [
        ("GET", "/healthz", {}), ("GET", "/readyz", {}), ("GET", "/metrics", {}),
        ("GET", "/openapi.json", {}), ("GET", "/regulator/v1/checkpoint", {}),
        ("GET", "/regulator/v1/keys", {}), ("GET", "/no/such/route", {}),
        ("PUT", "/healthz", {}), ("GET", "/ops/v1/tenants", {}),
        ("GET", "/ops/v1/tenants", bearer("vgw_o_bad")), ("GET", "/ops/v1/tenants", bearer(ops)),
        ("POST", "/ops/v1/tenants", bearer(ops)), ("GET", "/links/unknown", {}),
    ]
    for method, path, headers in cases:
        resp = await client.request(method, path, headers=headers)
        assert resp.headers.get("X-Content-Type-Options") == "nosniff", (method, path)
    resp = await client.get("/regulator/v1/checkpoint")
    assert resp.headers["Cache-Control"] == "no-cache"  # a handler's own rule is kept
