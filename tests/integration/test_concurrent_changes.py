"""Concurrent changes of one peer or tenant over real HTTP: exactly one winner, the rest 409.

On PostgreSQL the requests are made to pile up for real: a gate connection holds the row
lock of the object under test until every request is waiting on a lock, then lets go, so
they all race from the same state (no timing luck involved). SQLite's single writer
serialises them anyway; the same invariants must hold there too.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from gateway.audit.schema import log_entries
from gateway.http import appkeys
from provisioning.keys import generate_key_pair
from provisioning.schema import public_keys
from tests.helpers import (
    assert_problem,
    bearer,
    create_peer,
    create_tenant,
    opened,
    ops_token,
    verified_tenant,
)

N = 10


@asynccontextmanager
async def gate(
    client: Any, table: str, row_id: str, waiters: int, key: str = "id"
) -> AsyncIterator[None]:
    """Hold `table`'s row `row_id` locked (PostgreSQL) until `waiters` sessions wait on locks.

    The body of the `async with` starts the requests; leaving it waits for them to pile
    up behind the lock and then releases it. On SQLite it does nothing.
    """
    db = client.app[appkeys.DATABASE]
    if db.is_sqlite:
        yield
        return
    import asyncpg

    url = db.url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(f"SELECT 1 FROM {table} WHERE {key} = $1 FOR UPDATE", row_id)  # noqa: S608
        yield
        async with asyncio.timeout(30):  # a safety net, not a speed target
            # pg_stat_activity is a snapshot taken once per transaction: clear it each time.
            while True:
                await conn.execute("SELECT pg_stat_clear_snapshot()")
                if await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ) >= waiters:
                    break
                await asyncio.sleep(0.02)
        await tx.rollback()
    finally:
        await conn.close()


async def race(
    client: Any, table: str, row_id: str, calls: list[Callable[[], Awaitable[Any]]],
    key: str = "id",
) -> list[Any]:
    """Start every call at once behind the gate; the responses, in call order."""
    async with gate(client, table, row_id, len(calls), key):
        tasks = [asyncio.ensure_future(call()) for call in calls]
    return list(await asyncio.gather(*tasks))


async def logged(client: Any, **where: str) -> list[dict[str, Any]]:
    """Sequenced events (in log order) whose fields match `where`."""
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(select(log_entries.c.leaf, log_entries.c.leaf_hash)
                                    .order_by(log_entries.c.idx))).all()
    events = [e for r in rows if (e := opened(client.app[appkeys.DATABASE], r))]
    return [e for e in events if all(e.get(k) == v for k, v in where.items())]


async def statuses(responses: list[Any], winner: int) -> Counter[int]:
    """Count statuses; every loser must be a 409 problem+json (never a 500)."""
    for resp in responses:
        if resp.status != winner:
            await assert_problem(resp, 409, (await resp.json(content_type=None))["type"][18:])
    return Counter(r.status for r in responses)


async def test_concurrent_deletes_of_one_peer_revoke_it_once(client: Any) -> None:
    ops = await ops_token(client)
    _tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    responses = await race(client, "peers", peer["id"], [
        lambda: client.delete(f"/v1/peers/{peer['id']}", headers=bearer(token))
        for _ in range(N)
    ])
    assert await statuses(responses, 204) == Counter({204: 1, 409: N - 1})
    assert len(await logged(client, type="peer.revoked", peer_id=peer["id"])) == 1
    assert len(await logged(client, type="address.released", peer_id=peer["id"])) == 2


async def test_concurrent_rotations_keep_one_linear_key_history(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, public_key=generate_key_pair().public_key)
    new_keys = [generate_key_pair().public_key for _ in range(N)]
    responses = await race(client, "peers", peer["id"], [
        lambda k=k: client.post(f"/v1/peers/{peer['id']}/rotation", json={"public_key": k},
                                headers=bearer(token))
        for k in new_keys
    ])
    counts = await statuses(responses, 200)
    assert set(counts) <= {200, 409}
    if not client.app[appkeys.DATABASE].is_sqlite:
        # Every request started from the same key: one replaces it, the rest conflict.
        assert counts[200] == 1
    rotated = await logged(client, type="peer.key_rotated", peer_id=peer["id"])
    assert len(rotated) == counts[200]
    # One chain, never a fork: each rotation starts from the key the previous one set.
    chain = [peer["public_key"]] + [e["public_key"] for e in rotated]
    assert [e["old_public_key"] for e in rotated] == chain[:-1]
    async with client.app[appkeys.DATABASE].read() as conn:
        live = (await conn.execute(select(public_keys.c.public_key).where(
            public_keys.c.peer_id == peer["id"], public_keys.c.retired_at.is_(None)))).all()
    assert [r.public_key for r in live] == [chain[-1]]
    resp = await client.get(f"/v1/peers/{peer['id']}", headers=bearer(token))
    assert (await resp.json())["public_key"] == chain[-1]


async def test_rotation_racing_deletion_never_changes_a_revoked_peer(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    path = f"/v1/peers/{peer['id']}"
    calls: list[Callable[[], Awaitable[Any]]] = []
    for _ in range(N // 2):
        calls.append(lambda: client.post(f"{path}/rotation", headers=bearer(token)))
        calls.append(lambda: client.delete(path, headers=bearer(token)))
    responses = await race(client, "peers", peer["id"], calls)
    for resp in responses:
        assert resp.status in (200, 204, 409), await resp.text()
        if resp.status == 409:
            await assert_problem(resp, 409, (await resp.json(content_type=None))["type"][18:])
    assert sum(r.status == 204 for r in responses) == 1
    events = await logged(client, peer_id=peer["id"])
    kinds = [e["type"] for e in events if e["type"] in ("peer.key_rotated", "peer.revoked")]
    assert kinds.count("peer.revoked") == 1 and kinds[-1] == "peer.revoked", kinds
    async with client.app[appkeys.DATABASE].read() as conn:
        live = (await conn.execute(select(public_keys.c.public_key).where(
            public_keys.c.peer_id == peer["id"], public_keys.c.retired_at.is_(None)))).all()
    assert live == []  # a revoked peer keeps no usable key
    resp = await client.get(path, headers=bearer(token))
    doc = await resp.json()
    revoked = next(e for e in events if e["type"] == "peer.revoked")
    assert doc["status"] == "revoked" and doc["public_key"] == revoked["public_key"]


async def test_concurrent_tenant_transitions_have_one_winner(client: Any) -> None:
    ops = await ops_token(client)
    for action, body, start in [
        ("verification", {"evidence_reference": "KYC-9"}, "pending"),
        ("suspension", {"reason": "unpaid"}, "verified"),
        ("termination", {"reason": "closed"}, "verified"),
    ]:
        tenant = await create_tenant(client, ops, registration_number=f"RC-{action}")
        if start == "verified":
            resp = await client.post(f"/ops/v1/tenants/{tenant['id']}/verification",
                                     json={"evidence_reference": "KYC-1"}, headers=bearer(ops))
            assert resp.status == 200
        responses = await race(client, "tenants", tenant["id"], [
            lambda t=tenant, a=action, b=body: client.post(
                f"/ops/v1/tenants/{t['id']}/{a}", json=b, headers=bearer(ops))
            for _ in range(N)
        ])
        assert await statuses(responses, 200) == Counter({200: 1, 409: N - 1}), action
        resp = await client.get(f"/ops/v1/tenants/{tenant['id']}", headers=bearer(ops))
        history = (await resp.json())["history"]
        assert [h["from"] for h in history[1:]] == [h["to"] for h in history[:-1]], history


async def test_termination_racing_peer_deletion_revokes_the_peer_once(client: Any) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: client.post(f"/ops/v1/tenants/{tenant['id']}/termination",
                            json={"reason": "closed"}, headers=bearer(ops)),
        *[lambda: client.delete(f"/v1/peers/{peer['id']}", headers=bearer(token))] * (N - 1),
    ]
    responses = await race(client, "peers", peer["id"], calls)
    assert responses[0].status == 200, await responses[0].text()
    for resp in responses[1:]:  # refused as a conflict, or as a revoked token: never twice
        assert resp.status in (204, 401, 409), await resp.text()
    assert len(await logged(client, type="peer.revoked", peer_id=peer["id"])) == 1


async def test_concurrent_token_and_regulator_key_revocations_log_once(client: Any) -> None:
    ops = await ops_token(client)
    _tenant, token = await verified_tenant(client, ops)
    token_id = token.split("_")[2]
    responses = await race(client, "tokens", token_id, [
        lambda: client.delete(f"/ops/v1/tokens/{token_id}", headers=bearer(ops))
        for _ in range(N)
    ])
    assert all(r.status == 200 for r in responses), [r.status for r in responses]
    assert len(await logged(client, type="token.revoked", token_id=token_id)) == 1

    public_key = base64.b64encode(Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)).decode()
    resp = await client.post("/ops/v1/regulator-keys", headers=bearer(ops), json={
        "keyid": "pta-race", "public_key": public_key, "label": "PTA"})
    assert resp.status == 201, await resp.text()
    responses = await race(client, "regulator_keys", "pta-race", [
        lambda: client.delete("/ops/v1/regulator-keys/pta-race", headers=bearer(ops))
        for _ in range(N)
    ], key="keyid")
    assert all(r.status == 200 for r in responses), [r.status for r in responses]
    assert len(await logged(client, type="regulator.key_revoked", key_id="pta-race")) == 1


async def test_one_time_link_is_redeemed_once_under_concurrency(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    resp = await client.post(f"/v1/peers/{peer['id']}/links", headers=bearer(token))
    url = (await resp.json())["url"]
    path = url[url.index("/links/"):]
    responses = await asyncio.gather(*[client.get(path) for _ in range(N)])
    assert sorted(r.status for r in responses) == [200] + [410] * (N - 1)


async def test_two_api_processes_racing_on_one_peer(
    client: Any, aiohttp_client: Any, settings: Any
) -> None:
    """Two app instances (as two `vpngw serve` processes) on one database share the locks."""
    from gateway.app import create_app

    other = await aiohttp_client(create_app(settings))
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token, public_key=generate_key_pair().public_key)
    path = f"/v1/peers/{peer['id']}"
    rotations = await race(client, "peers", peer["id"], [
        lambda c=c: c.post(f"{path}/rotation", json={"public_key": generate_key_pair().public_key},
                           headers=bearer(token))
        for c in (client, other) * (N // 2)
    ])
    counts = await statuses(rotations, 200)
    assert set(counts) <= {200, 409}
    if not client.app[appkeys.DATABASE].is_sqlite:
        assert counts[200] == 1
    deletes = await race(client, "peers", peer["id"], [
        lambda c=c: c.delete(path, headers=bearer(token)) for c in (client, other) * (N // 2)
    ])
    assert await statuses(deletes, 204) == Counter({204: 1, 409: N - 1})
    await other.app[appkeys.SEQUENCER].drain()
    rotated = await logged(client, type="peer.key_rotated", peer_id=peer["id"])
    assert len(rotated) == counts[200]
    chain = [peer["public_key"]] + [e["public_key"] for e in rotated]
    assert [e["old_public_key"] for e in rotated] == chain[:-1]
    assert len(await logged(client, type="peer.revoked", peer_id=peer["id"])) == 1
