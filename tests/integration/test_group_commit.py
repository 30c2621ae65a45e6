"""Group commit of peer creates on SQLite and PostgreSQL: creates that arrive together share
one transaction, and each caller still gets its own answer.

Some requests of a burst fail (quota, a reused key, the same new key twice, a malformed key,
a full pool) while the others succeed: nothing of a failed request is stored, the tenant's
active-peer counter matches its peers, and the audit log lists exactly the created peers in
commit order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select, text

from gateway.app import create_app
from gateway.audit.schema import log_entries
from gateway.http import appkeys
from gateway.settings import Settings
from provisioning import tokens
from provisioning.errors import CommitFailed, DuplicatePublicKey, PoolExhausted
from provisioning.keys import generate_key_pair
from provisioning.peers import NewPeer, Peer
from provisioning.schema import addresses, peers, public_keys, tenants
from tests.conftest import FakeClock
from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant


def _new(name: str, key: str | None = None) -> dict[str, Any]:
    return {"name": name, **({"public_key": key} if key else {})}


async def _stored(client: Any, tenant_id: str) -> dict[str, Any]:
    """What the database holds for the tenant: peers, keys, addresses, its counter."""
    async with client.app[appkeys.DATABASE].read() as conn:
        peer_rows = (await conn.execute(
            select(peers.c.id, peers.c.public_key, peers.c.revision)
            .where(peers.c.tenant_id == tenant_id))).all()
        ids = [r.id for r in peer_rows]
        key_count = await conn.scalar(
            select(func.count()).select_from(public_keys).where(public_keys.c.peer_id.in_(ids)))
        address_count = await conn.scalar(
            select(func.count()).select_from(addresses).where(addresses.c.peer_id.in_(ids)))
        counter = await conn.scalar(
            select(tenants.c.active_peers).where(tenants.c.id == tenant_id))
    return {"peers": {r.id: r for r in peer_rows}, "keys": key_count,
            "addresses": address_count, "counter": counter}


async def _provisioned_in_log_order(client: Any, tenant_id: str) -> list[str]:
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(
            select(log_entries.c.peer_id)
            .where(log_entries.c.type == "peer.provisioned", log_entries.c.tenant_id == tenant_id)
            .order_by(log_entries.c.idx))).all()
    return [r.peer_id for r in rows]


async def test_a_burst_with_refusals_gives_each_caller_its_own_answer(client: Any) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops, max_peers=6)
    used = generate_key_pair().public_key
    await create_peer(client, token, name="before", public_key=used)
    twice = generate_key_pair().public_key
    bodies = {
        **{f"fresh-{i}": _new(f"fresh-{i}", generate_key_pair().public_key) for i in range(7)},
        "reused": _new("reused", used),
        "twice-a": _new("twice-a", twice),
        "twice-b": _new("twice-b", twice),
        "malformed": _new("malformed", "not-a-key"),
        "server-key": _new("server-key"),
    }
    responses = dict(zip(bodies, await asyncio.gather(*(
        client.post("/v1/peers", json=body, headers=bearer(token)) for body in bodies.values()
    )), strict=True))

    await assert_problem(responses.pop("malformed"), 400, "invalid-input", detail_has="public_key")
    await assert_problem(responses.pop("reused"), 409, "duplicate-public-key")
    created: dict[str, dict[str, Any]] = {}
    codes: Counter[str] = Counter()
    for name, resp in responses.items():
        if resp.status == 201:
            created[name] = await resp.json()
            assert created[name]["name"] == name  # its own answer, not a neighbour's
        else:
            doc = await assert_problem(resp, 409, (await resp.json(content_type=None))["type"]
                                       .rsplit(":", 1)[-1])
            codes[doc["type"].rsplit(":", 1)[-1]] += 1
    # Five places were left under the quota of six, and ten requests could have used them.
    assert len(created) == 5
    assert not {"twice-a", "twice-b"} <= set(created)  # one key, at most one peer
    # The second request with that key is refused for the key, whatever the quota.
    twice_made = int("twice-a" in created or "twice-b" in created)
    assert codes == Counter({"quota-exceeded": 5 - twice_made, "duplicate-public-key": twice_made})
    server_keyed = created.get("server-key")
    if server_keyed is not None:
        assert server_keyed["private_key"] and "config" in server_keyed

    stored = await _stored(client, tenant["id"])
    created_ids = {p["id"] for p in created.values()}
    assert len(set(stored["peers"]) - created_ids) == 1  # the one made before the burst
    assert len(stored["peers"]) == 6 == stored["keys"] == stored["counter"]
    assert stored["addresses"] == 6 * len(client.app[appkeys.SETTINGS].pool_networks)
    assert {stored["peers"][i].public_key for i in created_ids} == {
        p["public_key"] for p in created.values()}

    logged = await _provisioned_in_log_order(client, tenant["id"])
    assert set(logged) == set(stored["peers"]) and len(logged) == 6
    # Commit order: each commit stamps its peers with the next revision of their gateway.
    revisions = [stored["peers"][peer_id].revision for peer_id in logged]
    assert revisions == sorted(revisions)

    resp = await client.get(f"/ops/v1/tenants/{tenant['id']}", headers=bearer(ops))
    assert (await resp.json())["active_peers"] == 6


@pytest.fixture
async def small_pool_client(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> Any:
    settings: Settings = make_settings(
        database_url, network={"endpoint": "vpn.test:51820", "pools": ("10.9.0.0/29",)})
    return await aiohttp_client(create_app(settings, clock=clock))


async def _principal(client: Any, token: str) -> tokens.Principal:
    async with client.app[appkeys.DATABASE].read() as conn:
        found = await tokens.authenticate(conn, token)
    assert found is not None
    return found


async def test_one_group_done_one_by_one_when_the_pool_runs_out(small_pool_client: Any) -> None:
    """Eight creates in one group for a pool with five addresses: the bulk write cannot
    be exact, so the group is redone request by request, each in its own savepoint."""
    client = small_pool_client
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops, max_peers=100)
    used = generate_key_pair().public_key
    await create_peer(client, token, name="before", public_key=used)
    who = await _principal(client, token)
    commands = client.app[appkeys.COMMANDS]
    wanted = [NewPeer(f"g{i}", generate_key_pair().public_key, False, None) for i in range(7)]
    wanted.insert(2, NewPeer("reused", used, False, None))
    # Submitted in one turn of the event loop: one group, one transaction.
    results = await asyncio.gather(*(commands.provision_peer(who, new) for new in wanted),
                                   return_exceptions=True)

    assert isinstance(results[2], DuplicatePublicKey)
    made = [r for r in results if isinstance(r, Peer)]
    assert [p.name for p in made] == ["g0", "g1", "g2", "g3"]  # 4 left after "before"
    assert all(isinstance(r, PoolExhausted) for r in results[6:])
    assert sorted(ip for p in made for ip in p.tunnel_ips) == [f"10.9.0.{i}" for i in (3, 4, 5, 6)]

    stored = await _stored(client, tenant["id"])
    assert len(stored["peers"]) == 5 == stored["keys"] == stored["addresses"] == stored["counter"]
    assert len({stored["peers"][p.id].revision for p in made}) == 1  # one commit for the group
    logged = await _provisioned_in_log_order(client, tenant["id"])
    assert logged[1:] == [p.id for p in made]


async def test_a_group_whose_commit_fails_answers_503_to_all_and_stores_nothing(
    client: Any,
) -> None:
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops, max_peers=10)
    await create_peer(client, token, name="before")
    db = client.app[appkeys.DATABASE]
    # The outbox refuses every row: the group's transaction fails after its members' work.
    if db.is_sqlite:
        create = ["CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
                  "BEGIN SELECT RAISE(ABORT, 'outbox refused'); END"]
        drop = ["DROP TRIGGER refuse_outbox"]
    else:
        create = ["CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN RAISE EXCEPTION 'outbox refused'; END $$",
                  "CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox "
                  "FOR EACH ROW EXECUTE FUNCTION refuse_outbox()"]
        drop = ["DROP TRIGGER refuse_outbox ON outbox", "DROP FUNCTION refuse_outbox()"]
    async with db.write() as conn:
        for sql in create:
            await conn.execute(text(sql))
    responses = await asyncio.gather(*(
        client.post("/v1/peers", json=_new(f"n{i}", generate_key_pair().public_key),
                    headers=bearer(token)) for i in range(4)))
    for resp in responses:
        await assert_problem(resp, 503, CommitFailed.code, detail_has="nothing of it was stored")
    stored = await _stored(client, tenant["id"])
    assert len(stored["peers"]) == 1 == stored["keys"] == stored["counter"]

    async with db.write() as conn:
        for sql in drop:
            await conn.execute(text(sql))
    await create_peer(client, token, name="after")
    assert (await _stored(client, tenant["id"]))["counter"] == 2


async def test_two_api_processes_share_a_quota_exactly(
    client: Any, aiohttp_client: Any, settings: Any
) -> None:
    """Two app instances (as two `vpngw serve`) on one database, both creating for a tenant
    with three places left. On PostgreSQL the tenant's row is held until both groups wait
    (the first at the counter, the second at the pool it claims next), so the second
    finds the quota taken only at its counter update and redoes its group one by one."""
    from gateway.app import create_app
    from tests.integration.test_concurrent_changes import gate

    other = await aiohttp_client(create_app(settings))
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops, max_peers=3)
    async with gate(client, "tenants", tenant["id"], 2):
        tasks = [asyncio.ensure_future(c.post(
            "/v1/peers", json=_new(f"{n}-{i}", generate_key_pair().public_key),
            headers=bearer(token))) for n, c in (("a", client), ("b", other)) for i in range(3)]
        await asyncio.sleep(0.2)  # let both processes start their groups
    responses = await asyncio.gather(*tasks)
    made = [await r.json() for r in responses if r.status == 201]
    for resp in responses:
        if resp.status != 201:
            await assert_problem(resp, 409, "quota-exceeded", detail_has="3 of 3")
    assert len(made) == 3
    stored = await _stored(client, tenant["id"])
    assert set(stored["peers"]) == {p["id"] for p in made}
    assert stored["keys"] == stored["counter"] == 3
    await other.app[appkeys.SEQUENCER].drain()
    assert set(await _provisioned_in_log_order(client, tenant["id"])) == set(stored["peers"])
