"""The in-process feed keeps its desired peers between passes and reads only what changed
since the gateway's last revision: after any change it must hand the reconciler exactly
what a fresh, full read of the database gives."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from gateway.app import create_app
from gateway.dataplane.local import FULL_READ_EVERY, LocalFeed
from gateway.http import appkeys
from gateway.wireguard.backend import PeerSpec
from gateway.wireguard.keys import to_base64
from gateway.wireguard.plan import DesiredChanges
from provisioning.schema import peers
from tests.conftest import FakeClock
from tests.helpers import bearer, create_peer, ops_token, verified_tenant


async def _ignore(_events: Any) -> None:
    return None


def feed_of(client: Any, clock: FakeClock) -> LocalFeed:
    return LocalFeed(db=client.app[appkeys.DATABASE], clock=clock.now, record=_ignore,
                     gateway_id=client.app[appkeys.SETTINGS].network.gateway_id)


def keyed(specs: list[PeerSpec]) -> dict[bytes, PeerSpec]:
    return {spec.public_key: spec for spec in specs}


async def test_the_kept_peers_follow_every_kind_of_change(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> None:
    client = await aiohttp_client(create_app(make_settings(database_url), clock=clock))
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    other, other_token = await verified_tenant(client, ops, registration_number="RC-2")
    kept = feed_of(client, clock)

    async def same_as_a_fresh_read() -> dict[bytes, PeerSpec]:
        now = keyed(await kept.desired_peers())
        assert now == keyed(await feed_of(client, clock).desired_peers())
        return now

    assert await same_as_a_fresh_read() == {}
    first = [await create_peer(client, token) for _ in range(3)]
    await create_peer(client, other_token)
    assert len(await same_as_a_fresh_read()) == 4

    revoked = await client.delete(f"/v1/peers/{first[0]['id']}", headers=bearer(token))
    assert revoked.status in (200, 204), await revoked.text()
    assert len(await same_as_a_fresh_read()) == 3

    rotated = await client.post(f"/v1/peers/{first[1]['id']}/rotation", json={},
                                headers=bearer(token))
    assert rotated.status in (200, 201), await rotated.text()
    assert len(await same_as_a_fresh_read()) == 3

    suspended = await client.post(f"/ops/v1/tenants/{tenant['id']}/suspension",
                                  json={"reason": "unpaid"}, headers=bearer(ops))
    assert suspended.status in (200, 201), await suspended.text()
    assert len(await same_as_a_fresh_read()) == 1  # only the other tenant's peer
    assert other["id"] != tenant["id"]


async def test_the_changes_it_tells_rebuild_what_a_fresh_read_gives(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> None:
    """A commit wake hands the reconciler only `desired_changes`: applied to what it had,
    they must give the whole desired set, whatever the change (a rotation is a gone key)."""
    client = await aiohttp_client(create_app(make_settings(database_url), clock=clock))
    ops = await ops_token(client)
    tenant, token = await verified_tenant(client, ops)
    _other, other_token = await verified_tenant(client, ops, registration_number="RC-2")
    kept = feed_of(client, clock)
    mirror = keyed(await kept.desired_peers())

    async def follow() -> tuple[int, int]:
        changed = await kept.desired_changes()
        assert changed is not None
        for key in changed.gone:
            mirror.pop(key, None)
        for spec in changed.put:
            mirror[spec.public_key] = spec
        assert mirror == keyed(await feed_of(client, clock).desired_peers())
        return len(changed.put), len(changed.gone)

    assert await follow() == (0, 0)
    first = [await create_peer(client, token) for _ in range(3)]
    await create_peer(client, other_token)
    assert await follow() == (4, 0)

    revoked = await client.delete(f"/v1/peers/{first[0]['id']}", headers=bearer(token))
    assert revoked.status in (200, 204), await revoked.text()
    assert await follow() == (0, 1)

    rotated = await client.post(f"/v1/peers/{first[1]['id']}/rotation", json={},
                                headers=bearer(token))
    assert rotated.status in (200, 201), await rotated.text()
    assert await follow() == (1, 1)  # the new key in, the old one gone

    suspended = await client.post(f"/ops/v1/tenants/{tenant['id']}/suspension",
                                  json={"reason": "unpaid"}, headers=bearer(ops))
    assert suspended.status in (200, 201), await suspended.text()
    assert await follow() == (0, 2)
    assert len(mirror) == 1

    # A row changed behind the application's back (no revision bump): the deltas miss it,
    # the periodic full read hands it on like any other change.
    last = next(p for p in mirror.values())
    async with client.app[appkeys.DATABASE].write() as conn:
        await conn.execute(update(peers).where(peers.c.public_key == to_base64(last.public_key))
                           .values(status="revoked"))
    assert await kept.desired_changes() == DesiredChanges()
    clock.advance(seconds=FULL_READ_EVERY.total_seconds())
    assert await follow() == (0, 1)
    assert mirror == {}
