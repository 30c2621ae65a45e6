"""Compliance staff read the log through /ops/v1/audit, filtered and paginated."""

from __future__ import annotations

from typing import Any

from gateway.http import appkeys
from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant


async def test_filters_and_pages(client: Any) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    await verified_tenant(client, ops, registration_number="RC-2")
    await create_peer(client, token)
    await client.app[appkeys.SEQUENCER].drain()

    resp = await client.get(f"/ops/v1/audit?tenant={tenant['id']}", headers=bearer(ops))
    items = (await resp.json())["items"]
    assert [i["type"] for i in items] == [
        "tenant.created",
        "tenant.verified",
        "token.issued",
        "peer.provisioned",
    ]
    assert all(i["event"]["tenant_id"] == tenant["id"] for i in items)

    resp = await client.get("/ops/v1/audit?type=tenant.created", headers=bearer(ops))
    assert len((await resp.json())["items"]) == 2

    seen: list[int] = []
    after = ""
    while True:
        resp = await client.get(f"/ops/v1/audit?limit=3{after}", headers=bearer(ops))
        doc = await resp.json()
        seen += [i["index"] for i in doc["items"]]
        if doc["next"] is None:
            break
        after = f"&after={doc['next']}"
    assert seen == list(range(len(seen))) and len(seen) == 8

    resp = await client.get(
        "/ops/v1/audit?since=2000-01-01T00:00:00Z&until=2000-01-02T00:00:00Z", headers=bearer(ops)
    )
    assert (await resp.json())["items"] == []


async def test_bad_filters(client: Any) -> None:
    ops = await ops_token(client)
    for query, field in [
        ("tenant=nope", "tenant"),
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("after=x", "after"),
    ]:
        resp = await client.get(f"/ops/v1/audit?{query}", headers=bearer(ops))
        doc = await assert_problem(resp, 400, "invalid-input")
        assert doc["field"] == field
    resp = await client.get(
        "/ops/v1/audit", headers=bearer((await verified_tenant(client, ops))[1])
    )
    await assert_problem(resp, 403, "wrong-role")
