"""Every bad input gets a 4xx problem+json that says what to fix, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from gateway.http import appkeys
from provisioning.keys import generate_key_pair
from provisioning.schema import peers
from tests.helpers import (
    TENANT,
    assert_problem,
    bearer,
    create_peer,
    create_tenant,
    ops_token,
    verified_tenant,
)


async def peer_count(client: Any) -> int:
    async with client.app[appkeys.DATABASE].read() as conn:
        return int(await conn.scalar(select(func.count()).select_from(peers)) or 0)


@pytest.fixture
async def tenant_token(client: Any) -> str:
    ops = await ops_token(client)
    return (await verified_tenant(client, ops))[1]


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"name": "a", "name": "b"}', "more than once"),
        (b'{"name": NaN}', "not valid JSON"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
async def test_malformed_bodies(client: Any, tenant_token: str, raw: bytes, detail: str) -> None:
    resp = await client.post(
        "/v1/peers", data=raw, headers={**bearer(tenant_token), "Content-Type": "application/json"}
    )
    await assert_problem(resp, 400, "invalid-input", detail_has=detail)
    assert await peer_count(client) == 0


@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"name": 5}, "name", "string"),
        ({"name": ""}, "name", "1 to 64"),
        ({"name": "x" * 65}, "name", "1 to 64"),
        ({"name": "bad\x07name"}, "name", "control"),
        ({"name": "bad\u200bname"}, "name", "control"),
        ({"name": " padded"}, "name", "whitespace"),
        ({"name": "a", "public_key": "abc"}, "public_key", "base64"),
        ({"name": "a", "public_key": "AAAA"}, "public_key", "32 bytes"),
        ({"name": "a", "public_key": "A" * 43 + "="}, "public_key", "all-zero"),
        ({"name": "a", "public_key": 42}, "public_key", "string"),
        ({"name": "a", "preshared_key": "yes"}, "preshared_key", "true or false"),
        ({"name": "a", "expires_at": "tomorrow"}, "expires_at", "RFC 3339"),
        ({"name": "a", "expires_at": "2020-01-01T00:00:00Z"}, "expires_at", "future"),
        ({"name": "a", "expires_at": "2030-01-01T00:00:00"}, "expires_at", "offset"),
        ({"name": "a", "colour": "red"}, "colour", "unknown field"),
    ],
)
async def test_invalid_peer_fields(
    client: Any, tenant_token: str, body: dict[str, Any], field: str, detail: str
) -> None:
    resp = await client.post("/v1/peers", json=body, headers=bearer(tenant_token))
    doc = await assert_problem(resp, 400, "invalid-input", detail_has=detail)
    assert doc["field"] == field
    assert await peer_count(client) == 0


async def test_wrong_content_type(client: Any, tenant_token: str) -> None:
    resp = await client.post(
        "/v1/peers",
        data="name=a",
        headers={**bearer(tenant_token), "Content-Type": "application/x-www-form-urlencoded"},
    )
    await assert_problem(resp, 415, "unsupported-media-type", detail_has="application/json")


async def test_oversize_body(client: Any, tenant_token: str) -> None:
    body = b'{"name": "' + b"x" * 70000 + b'"}'
    resp = await client.post(
        "/v1/peers", data=body, headers={**bearer(tenant_token), "Content-Type": "application/json"}
    )
    await assert_problem(resp, 413, "body-too-large", detail_has="65536")
    assert await peer_count(client) == 0


async def test_duplicate_public_key_across_tenants(client: Any) -> None:
    ops = await ops_token(client)
    _, first = await verified_tenant(client, ops)
    _, second = await verified_tenant(client, ops, registration_number="RC-2")
    key = generate_key_pair().public_key
    await create_peer(client, first, public_key=key)
    resp = await client.post(
        "/v1/peers", json={"name": "b", "public_key": key}, headers=bearer(second)
    )
    await assert_problem(resp, 409, "duplicate-public-key", detail_has="already registered")
    assert await peer_count(client) == 1


async def test_revoked_key_cannot_come_back(client: Any, tenant_token: str) -> None:
    key = generate_key_pair().public_key
    peer = await create_peer(client, tenant_token, public_key=key)
    await client.delete(f"/v1/peers/{peer['id']}", headers=bearer(tenant_token))
    resp = await client.post(
        "/v1/peers", json={"name": "again", "public_key": key}, headers=bearer(tenant_token)
    )
    await assert_problem(resp, 409, "duplicate-public-key")


async def test_duplicate_tenant(client: Any) -> None:
    ops = await ops_token(client)
    await create_tenant(client, ops)
    resp = await client.post("/ops/v1/tenants", json=TENANT, headers=bearer(ops))
    await assert_problem(resp, 409, "duplicate-tenant", detail_has="RC-1")


@pytest.mark.parametrize(
    ("field", "value", "detail"),
    [
        ("country", "Pakistan", "ISO 3166"),
        ("contact_email", "not-an-email", "e-mail"),
        ("max_peers", 0, "between"),
        ("max_peers", True, "integer"),
        ("legal_name", "", "1 to 200"),
        ("tax_id", "ñ", "ASCII"),
    ],
)
async def test_invalid_tenant_fields(client: Any, field: str, value: Any, detail: str) -> None:
    ops = await ops_token(client)
    resp = await client.post("/ops/v1/tenants", json={**TENANT, field: value}, headers=bearer(ops))
    doc = await assert_problem(resp, 400, "invalid-input", detail_has=detail)
    assert doc["field"] == field


async def test_missing_required_tenant_field(client: Any) -> None:
    ops = await ops_token(client)
    body = {k: v for k, v in TENANT.items() if k != "tax_id"}
    resp = await client.post("/ops/v1/tenants", json=body, headers=bearer(ops))
    await assert_problem(resp, 400, "invalid-input", detail_has="tax_id")


async def test_verification_needs_evidence(client: Any) -> None:
    ops = await ops_token(client)
    tid = (await create_tenant(client, ops))["id"]
    resp = await client.post(f"/ops/v1/tenants/{tid}/verification", json={}, headers=bearer(ops))
    await assert_problem(resp, 400, "invalid-input", detail_has="evidence_reference")


async def test_unverified_tenant_cannot_provision(client: Any) -> None:
    ops = await ops_token(client)
    tid = (await create_tenant(client, ops))["id"]
    resp = await client.post(f"/ops/v1/tenants/{tid}/tokens", headers=bearer(ops))
    token = (await resp.json())["token"]
    resp = await client.post("/v1/peers", json={"name": "a"}, headers=bearer(token))
    await assert_problem(resp, 403, "tenant-not-verified", detail_has="pending")


async def test_token_failures(client: Any, tenant_token: str) -> None:
    ops = await ops_token(client)
    await assert_problem(await client.get("/v1/peers"), 401, "missing-token", detail_has="Bearer")
    await assert_problem(
        await client.get("/v1/peers", headers={"Authorization": "Basic x"}), 401, "missing-token"
    )
    fake = "vgw_t_000000000000_" + "A" * 43
    await assert_problem(await client.get("/v1/peers", headers=bearer(fake)), 401, "invalid-token")
    await assert_problem(
        await client.get("/v1/peers", headers=bearer(ops)),
        403,
        "wrong-role",
        detail_has="tenant token",
    )
    await assert_problem(
        await client.get("/ops/v1/tenants", headers=bearer(tenant_token)),
        403,
        "wrong-role",
        detail_has="ops token",
    )
    token_id = tenant_token.split("_")[2]
    resp = await client.delete(f"/ops/v1/tokens/{token_id}", headers=bearer(ops))
    assert resp.status == 200
    await assert_problem(
        await client.get("/v1/peers", headers=bearer(tenant_token)),
        401,
        "invalid-token",
        detail_has="revoked",
    )
    # A token whose secret is wrong but whose id exists is refused the same way.
    forged = tenant_token[:-5] + "AAAAA"
    await assert_problem(
        await client.get("/v1/peers", headers=bearer(forged)), 401, "invalid-token"
    )


async def test_other_tenants_peers_look_missing(client: Any) -> None:
    ops = await ops_token(client)
    _, mine = await verified_tenant(client, ops)
    _, theirs = await verified_tenant(client, ops, registration_number="RC-9")
    peer = await create_peer(client, theirs)
    for method, path in [
        ("GET", ""),
        ("GET", "/config"),
        ("DELETE", ""),
        ("POST", "/rotation"),
        ("POST", "/links"),
    ]:
        resp = await client.request(method, f"/v1/peers/{peer['id']}{path}", headers=bearer(mine))
        await assert_problem(resp, 404, "not-found", detail_has=peer["id"])
    resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(theirs))
    assert (await resp.json())["status"] == "active"


async def test_unknown_route_and_method(client: Any) -> None:
    await assert_problem(await client.get("/nope"), 404, "not-found", detail_has="openapi")
    await assert_problem(await client.put("/v1/peers"), 405, "method-not-allowed", detail_has="GET")


async def test_revoking_twice(client: Any, tenant_token: str) -> None:
    peer = await create_peer(client, tenant_token)
    assert (
        await client.delete(f"/v1/peers/{peer['id']}", headers=bearer(tenant_token))
    ).status == 204
    resp = await client.delete(f"/v1/peers/{peer['id']}", headers=bearer(tenant_token))
    await assert_problem(resp, 409, "peer-not-active", detail_has="revoked")


async def test_bad_query_parameters(client: Any, tenant_token: str) -> None:
    for query in ("limit=0", "limit=abc", "limit=100000", "status=gone"):
        resp = await client.get(f"/v1/peers?{query}", headers=bearer(tenant_token))
        await assert_problem(resp, 400, "invalid-input")


async def test_link_ttl_bounds(client: Any, tenant_token: str) -> None:
    peer = await create_peer(client, tenant_token)
    for ttl in (5, 10**9, "600"):
        resp = await client.post(
            f"/v1/peers/{peer['id']}/links", json={"ttl_seconds": ttl}, headers=bearer(tenant_token)
        )
        await assert_problem(resp, 400, "invalid-input", detail_has="ttl_seconds")
    await assert_problem(await client.get("/links/short"), 404, "not-found", detail_has="token")
