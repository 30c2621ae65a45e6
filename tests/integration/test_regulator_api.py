"""Regulator API over a real socket, on SQLite and PostgreSQL.

Every query kind is answered and its answer verified the way the regulator does it
(gateway.regulator.answer: response signature, checkpoint, proofs, leaves); every
signature refusal is a 401 naming its check; scope and input refusals are 4xx; and
each answered query, and only an answered one, leaves one ``regulator.query`` event.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
import yarl
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.audit.canonical import format_time
from gateway.audit.schema import log_entries, outbox, regulator_nonces
from gateway.http import appkeys
from gateway.regulator import httpsig
from gateway.regulator.answer import (
    Exchange,
    Pins,
    TreeHead,
    Verification,
    check_consistency_proof,
    open_checkpoint,
    verify_exchange,
)
from gateway.regulator.client import GatewayClient, public_key_b64
from gateway.regulator.digest import content_digest
from gateway.regulator.structured import InnerList, Item, serialize_dictionary
from gateway.settings import Settings
from provisioning.events import Event
from tests.conftest import FakeClock
from tests.helpers import assert_problem, bearer, create_peer, opened, ops_token, verified_tenant

KEYID = "pta-test-1"
REQUEST_ID = {"country": "PK", "authority": "PTA", "number": "2026-000123"}
AUTHORISATION = {
    "reference": "PTA/LI/2026/0042",
    "legal_basis": "PECA 2016 s.32",
    "valid_from": "2026-11-01T00:00:00Z",
    "valid_until": "2026-12-31T00:00:00Z",
}


def body_of(query: dict[str, Any], **top: Any) -> bytes:
    doc = {"request_id": REQUEST_ID, "authorisation": AUTHORISATION, "query": query, **top}
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass
class Regulator:
    """Drives the regulator API exactly as a regulator's client does."""

    client: TestClient[Any, Any]
    clock: FakeClock
    pins: Pins
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    keyid: str = KEYID

    @property
    def authority(self) -> str:
        return f"{self.client.host}:{self.client.port}"

    @property
    def now(self) -> int:
        return int(self.clock.now().timestamp())

    def sign(self, body: bytes, *, key: Ed25519PrivateKey | None = None,
             keyid: str | None = None, created: int | None = None,
             expires: int | None = None, nonce: str | None = None) -> dict[str, str]:
        return httpsig.sign_request(
            private_key=key or self.key, keyid=keyid or self.keyid, authority=self.authority,
            body=body, created=self.now if created is None else created, expires=expires,
            nonce=nonce or secrets.token_urlsafe(16), scheme="http",
        ).headers()

    def hand_sign(self, body: bytes, *, components: tuple[httpsig.Component, ...],
                  params: httpsig.SignatureParams) -> dict[str, str]:
        """Build a signature the profile forbids (sign_request refuses to), by hand."""
        digest = content_digest(body)
        message = httpsig.MessageView.for_request(
            method="POST", authority=self.authority, path=httpsig.REQUEST_PATH, query="",
            headers={"content-type": "application/json", "content-digest": digest},
            scheme="http")
        base = httpsig.signature_base(components, params, message)
        inner = InnerList(tuple(c.to_item() for c in components), params.to_parameters())
        return {
            "Content-Type": "application/json", "Content-Digest": digest,
            "Signature-Input": serialize_dictionary({"reg": inner}),
            "Signature": serialize_dictionary({"reg": Item(self.key.sign(base))}),
        }

    def params(self, **changes: Any) -> httpsig.SignatureParams:
        base: dict[str, Any] = {"created": self.now, "expires": self.now + 300,
                                "nonce": secrets.token_urlsafe(16), "keyid": self.keyid,
                                "alg": "ed25519", "tag": httpsig.REQUEST_TAG}
        base.update(changes)
        return httpsig.SignatureParams(**base)

    async def post(self, body: bytes, headers: dict[str, str]) -> Any:
        return await self.client.post(httpsig.REQUEST_PATH, data=body, headers=headers)

    async def exchange(self, body: bytes) -> Exchange:
        headers = self.sign(body)
        resp = await self.post(body, headers)
        raw = await resp.read()
        assert resp.status == 200, raw
        return Exchange(url=str(resp.url), request_headers=tuple(headers.items()),
                        request_body=body, status=resp.status,
                        response_headers=tuple(resp.headers.items()), response_body=raw)

    async def ask(self, query: dict[str, Any], **top: Any) -> Verification:
        """Send a query; assert every check passes; return the verified answer."""
        exchange = await self.exchange(body_of(query, **top))
        result = verify_exchange(exchange, self.pins, now=self.clock.now().timestamp())
        assert result.ok, result.reason()
        return result


async def refused(reg: Regulator, body: bytes, headers: dict[str, str], check: str,
                  *, detail_has: str = "") -> None:
    resp = await reg.post(body, headers)
    doc = await assert_problem(resp, 401, f"signature-{check}", detail_has=detail_has)
    assert doc["check"] == check, doc
    assert resp.headers["WWW-Authenticate"].startswith("Signature")


async def register_key(client: TestClient[Any, Any], ops: str, key: Ed25519PrivateKey,
                       keyid: str) -> None:
    resp = await client.post("/ops/v1/regulator-keys", headers=bearer(ops), json={
        "keyid": keyid, "public_key": public_key_b64(key), "label": "PTA lawful intercept"})
    assert resp.status == 201, await resp.text()


MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def make_client(aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str,
                clock: FakeClock) -> MakeClient:
    async def make(**network: Any) -> TestClient[Any, Any]:
        settings = make_settings(
            database_url, network={"endpoint": "vpn.test:51820", **network})
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, clock=clock))
        return client
    return make


async def setup_regulator(client: TestClient[Any, Any], clock: FakeClock) -> tuple[Regulator, str]:
    ops = await ops_token(client)
    resp = await client.get("/regulator/v1/keys")
    pins = Pins.from_keys_document(await resp.json())
    reg = Regulator(client, clock, pins)
    await register_key(client, ops, reg.key, reg.keyid)
    return reg, ops


async def record(client: TestClient[Any, Any], *events: Event) -> None:
    await client.app[appkeys.COMMANDS].record(list(events))
    await client.app[appkeys.SEQUENCER].drain()


def started(peer: dict[str, Any], endpoint: str, first: datetime) -> Event:
    return Event("session.started", {
        "peer_id": peer["id"], "tenant_id": peer["tenant_id"], "gateway_id": "gw1",
        "endpoint": endpoint, "first_handshake": format_time(first)})


def ended(peer: dict[str, Any], last: datetime, rx: int = 1200, tx: int = 3400) -> Event:
    return Event("session.ended", {
        "peer_id": peer["id"], "tenant_id": peer["tenant_id"], "gateway_id": "gw1",
        "rx_bytes": rx, "tx_bytes": tx, "last_handshake": format_time(last)})


def kinds(result: Verification) -> list[tuple[str, str | None, str | None]]:
    return [(r["event"]["type"], r["event"].get("tenant_id"), r["event"].get("peer_id"))
            for r in result.records]


async def peer_of(client: TestClient[Any, Any], token: str, tenant: dict[str, Any],
                  name: str) -> dict[str, Any]:
    peer = await create_peer(client, token, name=name)
    return {**peer, "tenant_id": tenant["id"]}


async def regulator_queries(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    """Every regulator.query event, in the log or still waiting in the outbox."""
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(
            select(log_entries.c.leaf, log_entries.c.leaf_hash)
            .where(log_entries.c.type == "regulator.query")
            .order_by(log_entries.c.idx))).all()
        waiting = await conn.scalar(select(func.count()).select_from(outbox))
    assert waiting == 0
    return [opened(client.app[appkeys.DATABASE], r) for r in rows]


# ----------------------------------------------------------------------------- query kinds


async def test_tunnel_ip_attribution_follows_address_release_and_reuse(
    make_client: MakeClient, clock: FakeClock
) -> None:
    # One client address (10.0.0.2) and a one-day quarantine force its reuse.
    client = await make_client(pools=("10.0.0.0/30",), address_quarantine_days=1)
    reg, ops = await setup_regulator(client, clock)
    tenant_a, token_a = await verified_tenant(client, ops)
    peer_a = await peer_of(client, token_a, tenant_a, "a-laptop")          # 2026-11-30T03:00
    assert peer_a["tunnel_ips"] == ["10.0.0.2"]
    clock.advance(hours=1)
    resp = await client.delete(f"/v1/peers/{peer_a['id']}", headers=bearer(token_a))
    assert resp.status in (200, 204), await resp.text()                  # released 04:00
    clock.advance(days=2)
    tenant_b, token_b = await verified_tenant(client, ops, legal_name="Beta Traders",
                                              registration_number="RC-2", tax_id="NTN-2")
    peer_b = await peer_of(client, token_b, tenant_b, "b-phone")           # 2026-12-02T04:00
    assert peer_b["tunnel_ips"] == ["10.0.0.2"]
    clock.advance(hours=1)

    held_by_a = await reg.ask({"kind": "attribution.tunnel_ip", "ip": "10.0.0.2",
                               "at": "2026-11-30T03:30:00Z"})
    assert kinds(held_by_a) == [("tenant.created", tenant_a["id"], None),
                                ("peer.provisioned", tenant_a["id"], peer_a["id"]),
                                ("address.released", tenant_a["id"], peer_a["id"])]
    assert held_by_a.records[0]["event"]["legal_name"] == "Acme Bank Ltd"

    held_by_b = await reg.ask({"kind": "attribution.tunnel_ip", "ip": "10.0.0.2",
                               "at": "2026-12-02T04:30:00Z"})
    assert kinds(held_by_b) == [("tenant.created", tenant_b["id"], None),
                                ("peer.provisioned", tenant_b["id"], peer_b["id"])]

    for at in ("2026-11-30T02:59:59Z",   # before anyone was provisioned
               "2026-11-30T04:00:00Z",   # the instant it was released
               "2026-12-01T12:00:00Z"):  # in quarantine, held by nobody
        nobody = await reg.ask({"kind": "attribution.tunnel_ip", "ip": "10.0.0.2", "at": at})
        assert nobody.records == [], at
    other = await reg.ask({"kind": "attribution.tunnel_ip", "ip": "10.0.0.3",
                           "at": "2026-11-30T03:30:00Z"})
    assert other.records == []


async def test_endpoint_attribution_with_and_without_port(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant_a, token_a = await verified_tenant(client, ops)
    tenant_b, token_b = await verified_tenant(client, ops, legal_name="Beta Traders",
                                              registration_number="RC-2", tax_id="NTN-2")
    a1 = await peer_of(client, token_a, tenant_a, "a1")
    a2 = await peer_of(client, token_a, tenant_a, "a2")
    b1 = await peer_of(client, token_b, tenant_b, "b1")
    t0 = clock.now()                                                      # 03:00
    clock.advance(seconds=10)
    await record(client,
                 started(a1, "203.0.113.9:40001", t0 + timedelta(seconds=5)),
                 started(b1, "203.0.113.9:40002", t0 + timedelta(seconds=6)),
                 started(a2, "[2001:db8::7]:51820", t0 + timedelta(seconds=7)))
    clock.advance(minutes=30)
    await record(client, ended(a1, t0 + timedelta(minutes=27)))           # ends 03:30:10

    during = "2026-11-30T03:10:00Z"
    one = await reg.ask({"kind": "attribution.endpoint", "ip": "203.0.113.9", "port": 40001,
                         "at": during})
    assert kinds(one) == [("tenant.created", tenant_a["id"], None),
                          ("peer.provisioned", tenant_a["id"], a1["id"]),
                          ("session.started", tenant_a["id"], a1["id"]),
                          ("session.ended", tenant_a["id"], a1["id"])]
    assert one.records[2]["event"]["endpoint"] == "203.0.113.9:40001"
    assert one.records[3]["event"]["rx_bytes"] == 1200

    both = await reg.ask({"kind": "attribution.endpoint", "ip": "203.0.113.9", "at": during})
    peers = {p for _, _, p in kinds(both) if p}
    assert peers == {a1["id"], b1["id"]}
    assert {t for _, t, _ in kinds(both)} == {tenant_a["id"], tenant_b["id"]}
    assert a2["id"] not in json.dumps(both.records)

    later = "2026-11-30T03:45:00Z"  # a1's session is over, b1's goes on
    gone = await reg.ask({"kind": "attribution.endpoint", "ip": "203.0.113.9", "port": 40001,
                          "at": later})
    assert gone.records == []
    still = await reg.ask({"kind": "attribution.endpoint", "ip": "203.0.113.9", "at": later})
    assert {p for _, _, p in kinds(still) if p} == {b1["id"]}

    before = await reg.ask({"kind": "attribution.endpoint", "ip": "203.0.113.9",
                            "at": "2026-11-30T03:00:04Z"})
    assert before.records == []
    v6 = await reg.ask({"kind": "attribution.endpoint", "ip": "2001:db8:0::7", "at": during})
    assert {p for _, _, p in kinds(v6) if p} == {a2["id"]}


async def test_activity_queries_stay_within_their_subject_and_window(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant_a, token_a = await verified_tenant(client, ops)
    tenant_b, token_b = await verified_tenant(client, ops, legal_name="Beta Traders",
                                              registration_number="RC-2", tax_id="NTN-2")
    a1 = await peer_of(client, token_a, tenant_a, "a1")
    b1 = await peer_of(client, token_b, tenant_b, "b1")
    clock.advance(hours=1)                                                # 04:00
    a2 = await peer_of(client, token_a, tenant_a, "a2")
    await record(client, started(a1, "198.51.100.4:1111", clock.now()),
                 started(b1, "198.51.100.5:2222", clock.now()))
    clock.advance(hours=1)                                                # 05:00
    await record(client, ended(a1, clock.now()), ended(b1, clock.now()))
    clock.advance(minutes=5)

    everything = {"from": "2026-11-30T00:00:00Z", "to": "2026-11-30T23:00:00Z"}
    result = await reg.ask({"kind": "activity.tenant", "tenant_id": tenant_a["id"], **everything})
    types = [t for t, _, _ in kinds(result)]
    assert {t for _, t, _ in kinds(result)} == {tenant_a["id"]}
    assert types[:3] == ["tenant.created", "tenant.verified", "token.issued"]
    assert types.count("peer.provisioned") == 2 and "session.ended" in types
    assert b1["id"] not in json.dumps(result.records) and not result.answer["truncated"]
    async with client.app[appkeys.DATABASE].read() as conn:
        expected = (await conn.scalars(select(log_entries.c.idx).where(
            log_entries.c.tenant_id == tenant_a["id"]).order_by(log_entries.c.idx))).all()
    assert [r["index"] for r in result.records] == list(expected)

    window = await reg.ask({"kind": "activity.tenant", "tenant_id": tenant_a["id"],
                            "from": "2026-11-30T03:30:00Z", "to": "2026-11-30T04:30:00Z"})
    assert kinds(window) == [("peer.provisioned", tenant_a["id"], a2["id"]),
                             ("session.started", tenant_a["id"], a1["id"])]

    peer = await reg.ask({"kind": "activity.peer", "peer_id": a1["id"], **everything})
    assert [t for t, _, _ in kinds(peer)] == ["peer.provisioned", "session.started",
                                              "session.ended"]
    assert {p for _, _, p in kinds(peer)} == {a1["id"]}

    capped = await reg.ask({"kind": "activity.tenant", "tenant_id": tenant_a["id"],
                            **everything}, max_hits=2)
    assert capped.answer is not None and capped.answer["truncated"] is True
    assert [r["index"] for r in capped.records] == list(expected[:2])

    empty = await reg.ask({"kind": "activity.peer", "peer_id": a1["id"],
                           "from": "2026-11-30T06:00:00Z", "to": "2026-11-30T07:00:00Z"})
    assert empty.records == []


async def test_the_regulator_client_reads_and_verifies_a_large_answer(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    busy = await peer_of(client, token, tenant, "busy")
    t0 = clock.now()
    clock.advance(minutes=1)
    events = []
    for i in range(300):  # ~700 KB of answer: many TCP reads for the client
        events += [started(busy, f"198.51.100.{i % 200 + 1}:{1000 + i}", t0), ended(busy, t0)]
    await record(client, *events)
    body = body_of({"kind": "activity.peer", "peer_id": busy["id"],
                    "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T23:00:00Z"},
                   max_hits=1000)
    async with GatewayClient(yarl.URL(f"http://{reg.authority}")) as gw:
        exchange = await gw.query(body, private_key=reg.key, keyid=reg.keyid, created=reg.now)
    assert len(exchange.response_body) > 512 * 1024
    result = verify_exchange(exchange, reg.pins, now=clock.now().timestamp())
    assert result.ok, result.reason()
    assert len(result.records) == 601 and result.answer is not None
    assert result.answer["truncated"] is False


# ----------------------------------------------------------------------------- the audit trail


async def test_each_answered_query_is_logged_once_and_refusals_not_at_all(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant, token = await verified_tenant(client, ops)
    peer = await peer_of(client, token, tenant, "laptop")
    assert await regulator_queries(client) == []

    # Pretty-printed on purpose: the logged digest is over the exact bytes sent.
    body = json.dumps({"request_id": REQUEST_ID, "authorisation": AUTHORISATION,
                       "query": {"kind": "attribution.tunnel_ip", "ip": peer["tunnel_ips"][0],
                                 "at": "2026-11-30T03:00:00Z"}}, indent=2).encode()
    first = await reg.exchange(body)
    result = verify_exchange(first, reg.pins, now=clock.now().timestamp())
    assert result.ok, result.reason()
    logged = await regulator_queries(client)
    assert len(logged) == 1
    event = logged[0]
    assert event["key_id"] == KEYID
    assert event["authorisation_reference"] == AUTHORISATION["reference"]
    assert event["body_sha256"] == hashlib.sha256(body).hexdigest() == first.body_sha256
    assert event["result_count"] == len(result.records) == 2
    assert event["query_kind"] == "attribution.tunnel_ip"
    assert (event["request_country"], event["request_authority"], event["request_number"]) == (
        "PK", "PTA", "2026-000123")
    assert result.tree_head is not None

    # Refusals of every kind leave nothing in the log.
    good = body_of({"kind": "activity.peer", "peer_id": peer["id"],
                    "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T04:00:00Z"})
    await refused(reg, good, reg.sign(good, keyid="nobody"), "keyid")
    await refused(reg, good + b" ", reg.sign(good), "digest")
    out_of_scope = body_of({"kind": "activity.peer", "peer_id": peer["id"],
                            "from": "2026-10-01T00:00:00Z", "to": "2026-11-30T04:00:00Z"})
    resp = await reg.post(out_of_scope, reg.sign(out_of_scope))
    await assert_problem(resp, 403, "out-of-scope")
    resp = await reg.post(b"{", reg.sign(b"{"))
    await assert_problem(resp, 400, "invalid-input")
    assert len(await regulator_queries(client)) == 1

    # The next answer's checkpoint is a proven extension of the first one's.
    clock.advance(seconds=30)
    second = verify_exchange(await reg.exchange(good), reg.pins, now=clock.now().timestamp())
    assert second.ok, second.reason()
    assert len(await regulator_queries(client)) == 2
    old, new = result.tree_head, second.tree_head
    assert new is not None and new.size > old.size
    resp = await client.get(f"/regulator/v1/proofs/consistency?from={old.size}&to={new.size}")
    proof = [base64.b64decode(h) for h in await resp.json()]
    assert check_consistency_proof(old, new, proof).ok
    forged = TreeHead(old.origin, old.size, hashlib.sha256(b"fork").digest(), old.note)
    assert not check_consistency_proof(forged, new, proof).ok

    resp = await client.get("/regulator/v1/checkpoint")
    latest = open_checkpoint(await resp.text(), reg.pins.log)
    assert latest.size >= new.size


# ----------------------------------------------------------------------------- refusals


async def test_every_signature_refusal_is_a_401_naming_its_check(
    make_client: MakeClient, clock: FakeClock, aiohttp_client: Any
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant, _ = await verified_tenant(client, ops)
    body = body_of({"kind": "activity.tenant", "tenant_id": tenant["id"],
                    "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T04:00:00Z"})
    now = reg.now
    components = httpsig.REQUEST_COMPONENTS

    await refused(reg, body, {"Content-Type": "application/json"}, "label")
    await refused(reg, body, reg.sign(body, keyid="unknown-key"), "keyid", detail_has="unknown")
    revoked = Ed25519PrivateKey.generate()
    await register_key(client, ops, revoked, "pta-retired")
    resp = await client.delete("/ops/v1/regulator-keys/pta-retired", headers=bearer(ops))
    assert resp.status == 200, await resp.text()
    await refused(reg, body, reg.sign(body, key=revoked, keyid="pta-retired"), "keyid",
                  detail_has="revoked")
    await refused(reg, body, reg.sign(body, key=Ed25519PrivateKey.generate()), "signature")
    changed = body.replace(b"2026-11-30T04:00:00Z", b"2026-11-30T05:00:00Z")
    await refused(reg, changed, reg.sign(body), "digest")
    headers = reg.sign(body)
    headers["Content-Digest"] = content_digest(changed)  # digest redone, signature not
    await refused(reg, changed, headers, "signature")
    await refused(reg, body, reg.sign(body, created=now - 50, expires=now - 1), "expires",
                  detail_has="passed")
    await refused(reg, body, reg.sign(body, created=now + 61), "created", detail_has="ahead")
    await refused(reg, body, reg.sign(body, created=now - 61), "created", detail_has="behind")
    await refused(reg, body, reg.hand_sign(body, components=components,
                                           params=reg.params(expires=now + 301)),
                  "expires", detail_has="300")
    await refused(reg, body, reg.hand_sign(body, components=components[:-1],
                                           params=reg.params()),
                  "components", detail_has="content-digest")
    await refused(reg, body, reg.hand_sign(body, components=components,
                                           params=reg.params(nonce=None)),
                  "parameters", detail_has="nonce")
    await refused(reg, body, reg.hand_sign(body, components=components,
                                           params=reg.params(tag="other-profile")), "tag")
    await refused(reg, body, reg.hand_sign(body, components=components,
                                           params=reg.params(alg="rsa-pss-sha512")), "alg")

    accepted = reg.sign(body)
    resp = await reg.post(body, accepted)
    assert resp.status == 200, await resp.text()
    await refused(reg, body, accepted, "nonce", detail_has="already used")
    assert len(await regulator_queries(client)) == 1

    # A restarted service (a second app on the same database) still knows the nonce.
    restarted: TestClient[Any, Any] = await aiohttp_client(
        create_app(client.app[appkeys.SETTINGS], clock=clock))
    clock.advance(seconds=20)
    replay = await restarted.post(httpsig.REQUEST_PATH, data=body,
                                  headers={**accepted, "Host": reg.authority})
    doc = await assert_problem(replay, 401, "signature-nonce")
    assert doc["check"] == "nonce"
    fresh = await restarted.post(httpsig.REQUEST_PATH, data=body,
                                 headers={**reg.sign(body), "Host": reg.authority})
    assert fresh.status == 200, await fresh.text()
    assert len(await regulator_queries(client)) == 2

    # Nonces are forgotten once their signatures have expired (and so cannot be replayed).
    async with client.app[appkeys.DATABASE].read() as conn:
        assert await conn.scalar(select(func.count()).select_from(regulator_nonces)) == 2
    clock.advance(seconds=400)
    resp = await reg.post(body, reg.sign(body))
    assert resp.status == 200, await resp.text()
    async with client.app[appkeys.DATABASE].read() as conn:
        assert await conn.scalar(select(func.count()).select_from(regulator_nonces)) == 1


async def test_scope_and_input_refusals(make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    tenant, _ = await verified_tenant(client, ops)
    window = {"kind": "activity.tenant", "tenant_id": tenant["id"],
              "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T04:00:00Z"}

    async def send(body: bytes) -> Any:
        return await reg.post(body, reg.sign(body))

    outside = body_of({**window, "from": "2026-10-31T23:59:59Z"})
    await assert_problem(await send(outside), 403, "out-of-scope", detail_has="inside")
    too_late = body_of({"kind": "attribution.tunnel_ip", "ip": "10.100.0.2",
                        "at": "2026-12-31T00:00:01Z"})
    await assert_problem(await send(too_late), 403, "out-of-scope")
    expired_auth = json.dumps({
        "request_id": REQUEST_ID,
        "query": {**window, "from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"},
        "authorisation": {**AUTHORISATION, "valid_until": "2026-11-29T00:00:00Z"},
    }).encode()
    await assert_problem(await send(expired_auth), 403, "out-of-scope", detail_has="not in force")

    no_auth = json.dumps({"request_id": REQUEST_ID, "query": window}).encode()
    await assert_problem(await send(no_auth), 400, "invalid-input", detail_has="authorisation")
    await assert_problem(await send(body_of(window, max_hits=1001)), 400, "invalid-input",
                         detail_has="max_hits")
    await assert_problem(await send(body_of(window, max_hits=0)), 400, "invalid-input",
                         detail_has="max_hits")
    await assert_problem(await send(body_of(window, filter="x")), 400, "invalid-input",
                         detail_has="filter")
    await assert_problem(await send(body_of({**window, "ip": "10.0.0.1"})), 400,
                         "invalid-input", detail_has="query.ip")
    await assert_problem(await send(body_of({**window, "kind": "everything"})), 400,
                         "invalid-input", detail_has="query.kind")
    await assert_problem(await send(b'{"request_id": '), 400, "invalid-input",
                         detail_has="not valid JSON")
    await assert_problem(await send(b"[]"), 400, "invalid-input", detail_has="object")
    wrong_type = reg.sign(body_of(window))
    resp = await reg.post(body_of(window), {**wrong_type, "Content-Type": "text/plain"})
    await assert_problem(resp, 415, "unsupported-media-type")
    assert await regulator_queries(client) == []


async def test_public_log_endpoints(make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    await verified_tenant(client, ops)
    await client.app[appkeys.SEQUENCER].drain()
    resp = await client.get("/regulator/v1/checkpoint")
    assert resp.status == 200 and resp.content_type == "text/plain"
    head = open_checkpoint(await resp.text(), reg.pins.log)
    assert head.size >= 4 and head.origin == reg.pins.log.name
    resp = await client.get(f"/regulator/v1/proofs/consistency?from=1&to={head.size}")
    assert resp.status == 200 and all(len(base64.b64decode(h)) == 32 for h in await resp.json())
    for bad in ("from=0&to=1", f"from=1&to={head.size + 1000}", "from=x&to=1", "to=2"):
        resp = await client.get(f"/regulator/v1/proofs/consistency?{bad}")
        await assert_problem(resp, 400, "invalid-input")
    keys = await (await client.get("/regulator/v1/keys")).json()
    assert keys["response"]["keyid"].startswith("gw1-response-")
    assert len(base64.b64decode(keys["response"]["public_key"])) == 32
    assert keys["log"]["vkey"].startswith(keys["log"]["origin"] + "+")
    listed = await client.get("/ops/v1/regulator-keys", headers=bearer(ops))
    assert [k["keyid"] for k in (await listed.json())["items"]] == [KEYID]
    assert (await client.get("/ops/v1/regulator-keys")).status == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("query.at", "0001-01-01T00:00:00Z"),
        ("query.at", "0001-01-01T00:30:00+01:00"),
        ("query.at", "9999-12-31T23:59:59-01:00"),
        ("query.at", "²026-11-30T03:00:00Z"),
        ("authorisation.valid_from", "0001-01-01T00:30:00+01:00"),
        ("authorisation.valid_until", "9999-12-31T23:59:59-01:00"),
    ],
)
async def test_times_at_the_edge_of_the_range_are_refused(
    make_client: MakeClient, clock: FakeClock, field: str, value: str
) -> None:
    client = await make_client()
    reg, _ = await setup_regulator(client, clock)
    query = {"kind": "attribution.tunnel_ip", "ip": "10.100.0.2", "at": "2026-11-30T03:00:00Z"}
    authorisation = dict(AUTHORISATION)
    if field == "query.at":
        query["at"] = value
    else:
        authorisation[field.split(".")[1]] = value
    body = json.dumps(
        {"request_id": REQUEST_ID, "authorisation": authorisation, "query": query}
    ).encode()
    doc = await assert_problem(await reg.post(body, reg.sign(body)), 400, "invalid-input")
    assert doc["field"] == field, doc
    assert await regulator_queries(client) == []


async def test_deeply_nested_query_is_refused(make_client: MakeClient, clock: FakeClock) -> None:
    client = await make_client()
    reg, _ = await setup_regulator(client, clock)
    body = b'{"query": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    doc = await assert_problem(await reg.post(body, reg.sign(body)), 400, "invalid-input")
    assert doc["field"] == "query", doc


# ----------------------------------------------------------------------------- degenerate keys

IDENTITY_KEY_B64 = "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
ZERO_KEY_B64 = base64.b64encode(bytes(32)).decode()
FORGED = bytes([1]) + bytes(63)  # R = identity, S = 0: no private key involved


class Forger:
    """Stands in for a regulator's private key; "signs" everything with the same bytes."""

    def sign(self, data: bytes) -> bytes:
        return FORGED


async def test_degenerate_regulator_keys_are_refused_and_forged_queries_never_answered(
    make_client: MakeClient, clock: FakeClock
) -> None:
    client = await make_client()
    reg, ops = await setup_regulator(client, clock)
    for key in (IDENTITY_KEY_B64, ZERO_KEY_B64):
        resp = await client.post("/ops/v1/regulator-keys", headers=bearer(ops), json={
            "keyid": "pta-degenerate", "public_key": key, "label": "forged"})
        doc = await assert_problem(resp, 400, "invalid-input", detail_has="small order")
        assert doc["field"] == "public_key"
    resp = await client.get("/ops/v1/regulator-keys", headers=bearer(ops))
    assert [k["keyid"] for k in (await resp.json())["items"]] == [KEYID]

    # Keys stored before registration refused them are refused at use.
    commands = client.app[appkeys.COMMANDS]
    tenant, _ = await verified_tenant(client, ops)
    body = body_of({"kind": "activity.tenant", "tenant_id": tenant["id"],
                    "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T04:00:00Z"})
    for keyid, key in (("legacy-identity", IDENTITY_KEY_B64), ("legacy-zero", ZERO_KEY_B64)):
        await commands.add_regulator_key(keyid=keyid, public_key=key, label="legacy",
                                         actor="test")
        for _ in range(8):  # the all-zero key lets about 1 forgery in 8 through
            headers = reg.sign(body, key=Forger(), keyid=keyid)  # type: ignore[arg-type]
            await refused(reg, body, headers, "keyid", detail_has="small order")
    # A small-order R is refused under a sound key too.
    await refused(reg, body, reg.sign(body, key=Forger()), "signature",  # type: ignore[arg-type]
                  detail_has="R is a point of small order")
    assert await regulator_queries(client) == []
