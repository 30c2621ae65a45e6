"""Peer keys that could never make a tunnel are refused before anything is allocated.

The gateway's own interface key (a peer can never handshake with itself) is a 409 naming
the reason; Curve25519 points of small order (every handshake with them yields an
all-zero shared secret, which WireGuard refuses) are a 400 naming the field.
"""

from __future__ import annotations

import base64
from typing import Any

from gateway.http import appkeys
from provisioning.keys import SMALL_ORDER_PUBLIC_KEYS
from tests.helpers import assert_problem, bearer, create_peer, ops_token, verified_tenant


async def _peers(client: Any, token: str) -> list[dict[str, Any]]:
    resp = await client.get("/v1/peers", headers=bearer(token))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["items"]  # type: ignore[no-any-return]


async def test_the_gateways_own_key_is_refused_as_a_peer_key(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    gateway_key = client.app[appkeys.KEYS].wireguard_public

    resp = await client.post("/v1/peers", headers=bearer(token),
                             json={"name": "mirror", "public_key": gateway_key})
    doc = await assert_problem(resp, 409, "gateway-public-key", detail_has="gateway's own")
    assert doc["field"] == "public_key"
    assert await _peers(client, token) == []

    peer = await create_peer(client, token)
    resp = await client.post(f"/v1/peers/{peer['id']}/rotation", headers=bearer(token),
                             json={"public_key": gateway_key})
    await assert_problem(resp, 409, "gateway-public-key", detail_has="gateway's own")
    [kept] = await _peers(client, token)
    assert kept["public_key"] == peer["public_key"]


async def test_small_order_curve25519_keys_are_refused(client: Any) -> None:
    ops = await ops_token(client)
    _, token = await verified_tenant(client, ops)
    peer = await create_peer(client, token)
    for raw in SMALL_ORDER_PUBLIC_KEYS:
        for variant in (raw, raw[:31] + bytes([raw[31] | 0x80])):
            key = base64.b64encode(variant).decode()
            resp = await client.post("/v1/peers", headers=bearer(token),
                                     json={"name": "weak", "public_key": key})
            doc = await assert_problem(resp, 400, "invalid-input", detail_has="small order")
            assert doc["field"] == "public_key"
            resp = await client.post(f"/v1/peers/{peer['id']}/rotation", headers=bearer(token),
                                     json={"public_key": key})
            await assert_problem(resp, 400, "invalid-input", detail_has="small order")
    assert [p["id"] for p in await _peers(client, token)] == [peer["id"]]
