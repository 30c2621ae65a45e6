"""Malformed input at the edges of Python's parsers is a 4xx naming the field, never a 500.

Each case once reached a 500 `internal-error` (RecursionError, ValueError from int() on
Unicode digits or too many digits, OverflowError at the ends of the datetime range,
PostgreSQL refusing NUL in text); all run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant


@pytest.fixture
async def tokens(client: Any) -> tuple[str, str]:
    ops = await ops_token(client)
    return ops, (await verified_tenant(client, ops))[1]


async def field_problem(resp: Any, status: int, field: str, *, code: str = "invalid-input") -> None:
    doc = await assert_problem(resp, status, code)
    assert doc["field"] == field, doc
    assert doc["request_id"], doc


async def test_deeply_nested_body_is_refused(client: Any, tokens: tuple[str, str]) -> None:
    _, tenant = tokens
    for depth in (17, 1000, 30_000):  # 30,000 levels still fit the 64 KiB body limit
        raw = b'{"name": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
        resp = await client.post(
            "/v1/peers", data=raw, headers={**bearer(tenant), "Content-Type": "application/json"}
        )
        await field_problem(resp, 400, "name")
    # Brackets inside strings are text, not nesting.
    resp = await client.post("/v1/peers", json={"name": "[" * 80}, headers=bearer(tenant))
    await field_problem(resp, 400, "name")  # too long for a name, but no nesting complaint
    assert "nest" not in (await resp.json())["detail"]


@pytest.mark.parametrize("value", ["%C2%B2", "%D9%A3", "%EF%BC%93", "1" * 5000, "+5", "-1", " 5"])
async def test_integers_in_the_public_consistency_proof(client: Any, value: str) -> None:
    resp = await client.get(f"/regulator/v1/proofs/consistency?from={value}&to=3")
    await field_problem(resp, 400, "from")
    resp = await client.get(f"/regulator/v1/proofs/consistency?from=1&to={value}")
    await field_problem(resp, 400, "to")


async def test_huge_tree_size_in_the_public_consistency_proof(client: Any) -> None:
    resp = await client.get("/regulator/v1/proofs/consistency?from=1&to=99999999999999999999")
    await field_problem(resp, 400, "to")


@pytest.mark.parametrize(
    ("path", "role"),
    [("/v1/peers", "tenant"), ("/ops/v1/tenants", "ops"), ("/ops/v1/audit", "ops")],
)
@pytest.mark.parametrize("value", ["%C2%B2", "1" * 5000, "99999999999999999999"])
async def test_unicode_digits_and_huge_limits(
    client: Any, tokens: tuple[str, str], path: str, role: str, value: str
) -> None:
    token = tokens[0] if role == "ops" else tokens[1]
    resp = await client.get(f"{path}?limit={value}", headers=bearer(token))
    await field_problem(resp, 400, "limit")


@pytest.mark.parametrize("value", ["%C2%B2", "1" * 5000, "99999999999999999999", "%00"])
async def test_audit_after_is_a_bounded_ascii_integer(
    client: Any, tokens: tuple[str, str], value: str
) -> None:
    resp = await client.get(f"/ops/v1/audit?after={value}", headers=bearer(tokens[0]))
    await field_problem(resp, 400, "after")


@pytest.mark.parametrize(("path", "role"), [("/v1/peers", "tenant"), ("/ops/v1/tenants", "ops")])
@pytest.mark.parametrize("value", ["%00", "%C2%B2", "x" * 200])
async def test_page_cursor_is_an_id(
    client: Any, tokens: tuple[str, str], path: str, role: str, value: str
) -> None:
    token = tokens[0] if role == "ops" else tokens[1]
    resp = await client.get(f"{path}?after={value}", headers=bearer(token))
    await field_problem(resp, 400, "after")


async def test_page_cursor_round_trip_still_works(client: Any, tokens: tuple[str, str]) -> None:
    _, tenant = tokens
    first = await create_peer(client, tenant, name="a")
    second = await create_peer(client, tenant, name="b")
    resp = await client.get("/v1/peers?limit=1", headers=bearer(tenant))
    page = await resp.json()
    assert [p["id"] for p in page["items"]] == [first["id"]] and page["next"] == first["id"]
    resp = await client.get(f"/v1/peers?limit=1&after={page['next']}", headers=bearer(tenant))
    assert [p["id"] for p in (await resp.json())["items"]] == [second["id"]]


@pytest.mark.parametrize("value", ["%00", "peer.provisioned%00", "P%C3%89ER.x", "x" * 41])
async def test_audit_type_filter(client: Any, tokens: tuple[str, str], value: str) -> None:
    resp = await client.get(f"/ops/v1/audit?type={value}", headers=bearer(tokens[0]))
    await field_problem(resp, 400, "type")


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:30:00%2B01:00",  # one hour before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # one hour after year 9999 in UTC
        "0001-01-01T00:00:00Z",
        "%C2%B2026-01-01T00:00:00Z",
        "2026-11-30",
        "2026-11-30T03:00:00",
        "20261130T030000Z",
        "2026-11-30T03:00:60Z",
        "2026-11-30T03:00:00%00Z",
    ],
)
async def test_audit_time_filters(client: Any, tokens: tuple[str, str], value: str) -> None:
    for name in ("since", "until"):
        resp = await client.get(f"/ops/v1/audit?{name}={value}", headers=bearer(tokens[0]))
        await field_problem(resp, 400, name)


async def test_audit_time_filter_accepts_rfc3339(client: Any, tokens: tuple[str, str]) -> None:
    for value in ("2026-11-30T03:00:00Z", "2026-11-30T08:00:00.123456789%2B05:00"):
        resp = await client.get(f"/ops/v1/audit?since={value}", headers=bearer(tokens[0]))
        assert resp.status == 200, await resp.text()


@pytest.mark.parametrize(
    "value", ["9999-12-31T23:59:59-01:00", "10000-01-01T00:00:00Z", "9999-12-31T23:59:59Z"]
)
async def test_peer_expiry_beyond_the_time_range(
    client: Any, tokens: tuple[str, str], value: str
) -> None:
    resp = await client.post(
        "/v1/peers", json={"name": "far", "expires_at": value}, headers=bearer(tokens[1])
    )
    await field_problem(resp, 400, "expires_at")


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("DELETE", "/ops/v1/tokens/%00", "token_id"),
        ("DELETE", "/ops/v1/tokens/abc%00def", "token_id"),
        ("DELETE", "/ops/v1/regulator-keys/%00", "keyid"),
        ("DELETE", "/ops/v1/regulator-keys/" + "k" * 200, "keyid"),
        ("GET", "/ops/v1/tenants/%00", "tenant_id"),
        ("POST", "/ops/v1/tenants/%00/tokens", "tenant_id"),
        ("GET", "/v1/peers/%00", "peer_id"),
        ("GET", "/v1/peers/%00/config", "peer_id"),
    ],
)
async def test_path_ids_that_cannot_exist_are_404(
    client: Any, tokens: tuple[str, str], method: str, path: str, field: str
) -> None:
    token = tokens[1] if path.startswith("/v1/") else tokens[0]
    resp = await client.request(method, path, headers=bearer(token))
    await field_problem(resp, 404, field, code="not-found")


async def test_bad_path_id_without_a_token_is_still_401(client: Any) -> None:
    resp = await client.delete("/ops/v1/tokens/%00")
    await assert_problem(resp, 401, "missing-token")


async def test_a_parameter_sent_twice_is_refused(client: Any, tokens: tuple[str, str]) -> None:
    resp = await client.get("/v1/peers?limit=1&limit=2", headers=bearer(tokens[1]))
    await field_problem(resp, 400, "limit")
    resp = await client.get("/regulator/v1/proofs/consistency?from=1")
    await field_problem(resp, 400, "to")
