"""Test helpers that drive the real HTTP API like a client would."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from gateway.audit import storage
from gateway.db import Database
from gateway.http import appkeys


async def ops_token(client: TestClient[Any, Any]) -> str:
    commands = client.app[appkeys.COMMANDS]
    return (await commands.issue_ops_token(label="test", actor="test")).secret


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


TENANT = {
    "legal_name": "Acme Bank Ltd",
    "registration_number": "RC-1",
    "tax_id": "NTN-1",
    "country": "PK",
    "contact_email": "it@acme.example",
}


async def create_tenant(client: TestClient[Any, Any], ops: str, **fields: Any) -> dict[str, Any]:
    resp = await client.post("/ops/v1/tenants", json={**TENANT, **fields}, headers=bearer(ops))
    assert resp.status == 201, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def verified_tenant(
    client: TestClient[Any, Any], ops: str, **fields: Any
) -> tuple[dict[str, Any], str]:
    """A verified tenant and a tenant token for it."""
    tenant = await create_tenant(client, ops, **fields)
    resp = await client.post(
        f"/ops/v1/tenants/{tenant['id']}/verification",
        json={"evidence_reference": "KYC-2026-001"},
        headers=bearer(ops),
    )
    assert resp.status == 200, await resp.text()
    resp = await client.post(f"/ops/v1/tenants/{tenant['id']}/tokens", headers=bearer(ops))
    assert resp.status == 201, await resp.text()
    return tenant, (await resp.json())["token"]


async def create_peer(client: TestClient[Any, Any], token: str, **fields: Any) -> dict[str, Any]:
    resp = await client.post("/v1/peers", json={"name": "laptop", **fields}, headers=bearer(token))
    assert resp.status == 201, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


async def assert_problem(
    resp: Any, status: int, code: str, *, detail_has: str = ""
) -> dict[str, Any]:
    body = await resp.text()
    assert resp.status == status, body
    assert resp.content_type == "application/problem+json", body
    doc = await resp.json(content_type=None)
    assert doc["type"] == f"urn:vpngw:problem:{code}", doc
    assert doc["status"] == status and doc["title"] and doc["detail"]
    assert detail_has.lower() in doc["detail"].lower(), doc
    return doc  # type: ignore[no-any-return]


def opened(db: Database, row: Any) -> Any:
    """The event of a log_entries or outbox row (its `leaf` and `leaf_hash`), opened with
    the database's payload keys; None if erased."""
    return storage.Opener(db.payload_keys).event(row.leaf, row.leaf_hash)
