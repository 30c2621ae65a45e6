"""Sealed one-time links for server-generated keys, over a real socket on SQLite and
PostgreSQL: the key is only inside the sealed link, served once, and stored nowhere."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select, update
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.http import appkeys
from gateway.settings import Settings
from provisioning.schema import config_links
from tests.conftest import FakeClock
from tests.helpers import assert_problem, bearer, ops_token, verified_tenant


def link_path(url: str) -> str:
    return "/links/" + url.rsplit("/links/", 1)[1]


def database_bytes(settings: Settings) -> bytes:
    files = [settings.data_dir / n for n in ("vpngw.db", "vpngw.db-wal")]
    return b"".join(f.read_bytes() for f in files if f.exists())


def public_key_of_new_pair() -> str:
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    return subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True,
                          check=True).stdout.strip()


async def setup(client: TestClient[Any, Any]) -> str:
    _tenant, token = await verified_tenant(client, await ops_token(client))
    return token


async def test_server_key_travels_only_in_the_sealed_link(
    client: TestClient[Any, Any], settings: Settings, tmp_path: Path
) -> None:
    token = await setup(client)
    with capture_logs() as logs:
        resp = await client.post("/v1/peers", headers=bearer(token),
                                 json={"name": "kiosk", "preshared_key": True, "link": True})
        assert resp.status == 201, await resp.text()
        peer = await resp.json()
        assert "private_key" not in peer and "config" not in peer
        assert resp.headers["Cache-Control"] == "no-store"
        url = peer["link"]["url"]
        secret = url.rsplit("/", 1)[1]
        await client.app[appkeys.SEQUENCER].drain()
        # Before anyone opens it: neither the key nor the token is stored or logged.
        async with client.app[appkeys.DATABASE].read() as conn:
            stored = (await conn.execute(select(config_links))).one()
        assert stored.sealed_config and secret.encode() not in bytes(stored.sealed_config)

        page = await client.get(link_path(url), headers={"Accept": "text/html"})
        assert page.status == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        text = await page.text()
        assert "<svg" in text and "PrivateKey = " in text
        private_key = text.split("PrivateKey = ", 1)[1].split("\n", 1)[0]
        assert len(private_key) == 44
    for entry in logs:
        assert private_key not in str(entry) and secret not in str(entry)
    if settings.database_url.startswith("sqlite"):
        raw = database_bytes(settings)
        assert private_key.encode() not in raw and secret.encode() not in raw

    # The key matches the peer's public key, and the config is one wg-quick accepts.
    derived = (await asyncio.to_thread(subprocess.run, ["wg", "pubkey"], input=private_key,
                                       capture_output=True, text=True, check=True)).stdout.strip()
    assert derived == peer["public_key"]
    conf = text.split("<pre>", 1)[1].split("</pre>", 1)[0].replace("&#x27;", "'")
    (tmp_path / "wg0.conf").write_text(conf.replace("&lt;", "<").replace("&gt;", ">"))
    strip = await asyncio.to_thread(subprocess.run, ["wg-quick", "strip",
                                                     str(tmp_path / "wg0.conf")],
                                    capture_output=True, text=True, check=False)
    assert strip.returncode == 0 and f"PrivateKey = {private_key}" in strip.stdout

    # Once: then 410. A token that was never issued: 404.
    again = await client.get(link_path(url))
    await assert_problem(again, 410, "link-unavailable")
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    await assert_problem(await client.get(f"/links/{tampered}"), 404, "not-found")
    async with client.app[appkeys.DATABASE].read() as conn:
        assert (await conn.execute(select(config_links.c.sealed_config))).scalar() is None


async def test_rotation_into_a_sealed_link(client: TestClient[Any, Any]) -> None:
    token = await setup(client)
    resp = await client.post("/v1/peers", headers=bearer(token), json={"name": "phone"})
    peer = await resp.json()
    resp = await client.post(f"/v1/peers/{peer['id']}/rotation", headers=bearer(token),
                             json={"link": True})
    assert resp.status == 200, await resp.text()
    rotated = await resp.json()
    assert rotated["public_key"] != peer["public_key"] and "private_key" not in rotated
    conf = await (await client.get(link_path(rotated["link"]["url"]))).text()
    assert "PrivateKey = " in conf and "# PrivateKey" not in conf
    bad = await client.post(f"/v1/peers/{peer['id']}/rotation", headers=bearer(token),
                            json={"link": True, "public_key": peer["public_key"]})
    problem = await assert_problem(bad, 400, "invalid-input")
    assert problem["field"] == "link"


async def test_client_key_link_and_bad_link_values(client: TestClient[Any, Any]) -> None:
    token = await setup(client)
    pub = await asyncio.to_thread(public_key_of_new_pair)
    resp = await client.post("/v1/peers", headers=bearer(token),
                             json={"name": "laptop", "public_key": pub, "link": True})
    assert resp.status == 201
    conf = await (await client.get(link_path((await resp.json())["link"]["url"]))).text()
    assert "# PrivateKey = <this device's private key>" in conf  # nothing secret to seal
    for value in ("yes", 1, None):
        resp = await client.post("/v1/peers", headers=bearer(token),
                                 json={"name": "x", "link": value})
        problem = await assert_problem(resp, 400, "invalid-input")
        assert problem["field"] == "link"
    listed = await (await client.get("/v1/peers", headers=bearer(token))).json()
    assert [p["name"] for p in listed["items"]] == ["laptop"]  # nothing half-made


async def test_expired_and_altered_seals(
    aiohttp_client: Any, settings: Settings, clock: FakeClock
) -> None:
    client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, clock=clock))
    token = await setup(client)
    first = await (await client.post("/v1/peers", headers=bearer(token),
                                     json={"name": "a", "link": True})).json()
    second = await (await client.post("/v1/peers", headers=bearer(token),
                                      json={"name": "b", "link": True})).json()
    db = client.app[appkeys.DATABASE]
    async with db.write() as conn:  # a disk or backup that flipped a bit
        row = (await conn.execute(select(config_links.c.token_hash,
                                         config_links.c.sealed_config))).first()
        assert row is not None
        broken = bytes(row.sealed_config)[:-1] + bytes([row.sealed_config[-1] ^ 1])
        await conn.execute(update(config_links).where(
            config_links.c.token_hash == row.token_hash).values(sealed_config=broken))
    statuses = sorted([(await client.get(link_path(p["link"]["url"]))).status
                       for p in (first, second)])
    assert statuses == [200, 410]
    third = await (await client.post("/v1/peers", headers=bearer(token),
                                     json={"name": "c", "link": True})).json()
    clock.advance(seconds=client.app[appkeys.SETTINGS].tenants.link_ttl_seconds + 1)
    await client.app[appkeys.COMMANDS].expire_due_peers()
    async with db.read() as conn:
        left = (await conn.execute(select(config_links.c.sealed_config).where(
            config_links.c.sealed_config.is_not(None)))).all()
    assert left == []  # an expired seal is erased, not kept until someone asks
    await assert_problem(await client.get(link_path(third["link"]["url"])), 410,
                         "link-unavailable")
