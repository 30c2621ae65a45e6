"""Two-person control: sensitive operations wait for a second, different ops principal.

Real HTTP over a socket, on SQLite and PostgreSQL, with approvals switched on.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select
from structlog.testing import capture_logs

from gateway.app import create_app
from gateway.approvals.errors import SamePrincipal
from gateway.audit.schema import log_entries
from gateway.http import appkeys
from provisioning import tokens
from provisioning.tokens import Role
from tests.conftest import FakeClock
from tests.helpers import assert_problem, bearer, opened

ON = {"required": True, "expiry_hours": 24.0}


def new_key() -> str:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@pytest.fixture
async def client(aiohttp_client: Any, make_settings: Any, database_url: str,
                 clock: FakeClock) -> Any:
    return await aiohttp_client(create_app(make_settings(database_url, approvals=ON),
                                           clock=clock))


async def ops(client: Any, label: str = "ops", actor: str = "test") -> tuple[str, str]:
    """(bearer, token id) of an ops token made directly (test setup, not under approval)."""
    issued = await client.app[appkeys.COMMANDS].issue_ops_token(label=label, actor=actor)
    return issued.secret, issued.token_id


async def events(client: Any, *, after: int = -1) -> list[dict[str, Any]]:
    """The log's entries (type and payload), in log order."""
    await client.app[appkeys.SEQUENCER].drain()
    async with client.app[appkeys.DATABASE].read() as conn:
        rows = (await conn.execute(
            select(log_entries.c.idx, log_entries.c.leaf, log_entries.c.leaf_hash)
            .where(log_entries.c.idx > after).order_by(log_entries.c.idx))).all()
    db = client.app[appkeys.DATABASE]
    return [opened(db, r) for r in rows]


def chain(docs: list[dict[str, Any]], prefixes: tuple[str, ...]) -> list[str]:
    return [d["type"] for d in docs if d["type"].startswith(prefixes)]


async def test_a_key_registration_waits_for_a_second_principal(client: Any) -> None:
    alice, alice_id = await ops(client, "alice")
    bob, bob_id = await ops(client, "bob")
    body = {"keyid": "pta-2026", "public_key": new_key(), "label": "PTA"}

    resp = await client.post("/ops/v1/regulator-keys", json=body, headers=bearer(alice))
    assert resp.status == 202, await resp.text()
    pending = (await resp.json())["approval"]
    assert resp.headers["Location"] == f"/ops/v1/approvals/{pending['id']}"
    assert pending["status"] == "pending" and pending["kind"] == "regulator_key.register"
    assert pending["requested_by"] == f"token:{alice_id}"
    assert pending["subject"]["keyid"] == "pta-2026"
    listed = await (await client.get("/ops/v1/regulator-keys", headers=bearer(bob))).json()
    assert listed["items"] == []  # nothing happened yet

    url = f"/ops/v1/approvals/{pending['id']}"
    own = await client.post(f"{url}/approval", headers=bearer(alice))
    await assert_problem(own, 403, "approval-same-principal", detail_has="different")
    assert (await (await client.get(url, headers=bearer(bob))).json())["status"] == "pending"

    granted = await client.post(f"{url}/approval", headers=bearer(bob))
    assert granted.status == 200, await granted.text()
    doc = await granted.json()
    assert doc["approval"]["status"] == "granted"
    assert doc["approval"]["decided_by"] == f"token:{bob_id}"
    assert doc["result"]["keyid"] == "pta-2026"
    assert doc["result"]["created_by"] == f"token:{alice_id}"  # acting as the requester
    listed = await (await client.get("/ops/v1/regulator-keys", headers=bearer(bob))).json()
    assert [k["keyid"] for k in listed["items"]] == ["pta-2026"]

    again = await client.post(f"{url}/approval", headers=bearer(bob))
    await assert_problem(again, 409, "approval-decided")

    docs = await events(client)
    assert chain(docs, ("approval.", "regulator.")) == [
        "approval.requested", "approval.granted", "regulator.key_added"]
    requested, grant, added = (d for d in docs if d["type"].startswith(("approval.", "reg")))
    assert requested["requested_by"] == grant["requested_by"] == f"token:{alice_id}"
    assert grant["decided_by"] == f"token:{bob_id}"
    assert requested["approval_id"] == grant["approval_id"] == pending["id"]
    assert added["actor"] == f"token:{alice_id}" and added["key_id"] == "pta-2026"
    # The grant and the operation's event were committed together, the grant first.
    assert added["ts"] == grant["ts"]


async def test_an_expired_approval_does_nothing(client: Any, clock: FakeClock) -> None:
    alice, _ = await ops(client, "alice")
    bob, _ = await ops(client, "bob")
    await client.app[appkeys.COMMANDS].add_regulator_key(
        keyid="pta-old", public_key=new_key(), label="old", actor="test")
    resp = await client.delete("/ops/v1/regulator-keys/pta-old", headers=bearer(alice))
    assert resp.status == 202, await resp.text()
    approval_id = (await resp.json())["approval"]["id"]
    before = len(await events(client))

    clock.advance(hours=24, seconds=1)
    late = await client.post(f"/ops/v1/approvals/{approval_id}/approval", headers=bearer(bob))
    await assert_problem(late, 409, "approval-expired", detail_has="did nothing")
    keys = await (await client.get("/ops/v1/regulator-keys", headers=bearer(bob))).json()
    assert keys["items"][0]["revoked_at"] is None  # still active
    shown = await (await client.get(f"/ops/v1/approvals/{approval_id}",
                                    headers=bearer(bob))).json()
    assert shown["status"] == "expired" and shown["decided_by"] == "system"
    rejected = await client.post(f"/ops/v1/approvals/{approval_id}/rejection",
                                 headers=bearer(bob))
    await assert_problem(rejected, 409, "approval-decided")

    # The background job expires the others, each once.
    resp = await client.delete("/ops/v1/regulator-keys/pta-old", headers=bearer(alice))
    second = (await resp.json())["approval"]["id"]
    assert await client.app[appkeys.APPROVALS].expire_due() == 0
    clock.advance(hours=25)
    assert await client.app[appkeys.APPROVALS].expire_due() == 1
    assert await client.app[appkeys.APPROVALS].expire_due() == 0

    after = (await events(client))[before:]
    assert chain(after, ("approval.", "regulator.")) == [
        "approval.expired", "approval.requested", "approval.expired"]
    assert after[0]["approval_id"] == approval_id and after[-1]["approval_id"] == second
    assert all(d["requested_by"] and d["decided_by"] == "system" for d in after
               if d["type"] == "approval.expired")
    pending = await (await client.get("/ops/v1/approvals?status=pending",
                                      headers=bearer(bob))).json()
    assert pending["items"] == []


async def test_an_approval_after_its_preconditions_changed_is_refused(client: Any) -> None:
    alice, _ = await ops(client, "alice")
    bob, _ = await ops(client, "bob")
    carol, _ = await ops(client, "carol")
    await client.app[appkeys.COMMANDS].add_regulator_key(
        keyid="pta-1", public_key=new_key(), label="one", actor="test")
    first = await client.delete("/ops/v1/regulator-keys/pta-1", headers=bearer(alice))
    second = await client.delete("/ops/v1/regulator-keys/pta-1", headers=bearer(carol))
    first_id = (await first.json())["approval"]["id"]
    second_id = (await second.json())["approval"]["id"]
    ok = await client.post(f"/ops/v1/approvals/{second_id}/approval", headers=bearer(bob))
    assert ok.status == 200, await ok.text()
    before = len(await events(client))
    stale = await client.post(f"/ops/v1/approvals/{first_id}/approval", headers=bearer(bob))
    await assert_problem(stale, 409, "approval-precondition-changed", detail_has="no longer")
    assert (await events(client))[before:] == []  # nothing written
    still = await client.get(f"/ops/v1/approvals/{first_id}", headers=bearer(bob))
    assert (await still.json())["status"] == "pending"  # until rejected or expired

    # Retention: two requests against 365 days; once one is granted the other is stale.
    a = await client.put("/ops/v1/retention", json={"retention_days": 400},
                         headers=bearer(alice))
    c = await client.put("/ops/v1/retention", json={"retention_days": 500},
                         headers=bearer(carol))
    assert a.status == c.status == 202
    a_id, c_id = (await a.json())["approval"]["id"], (await c.json())["approval"]["id"]
    assert (await client.post(f"/ops/v1/approvals/{c_id}/approval",
                              headers=bearer(bob))).status == 200
    shown = await (await client.get("/ops/v1/retention", headers=bearer(bob))).json()
    assert shown == {"retention_days": 500, "in_settings": 365, "held": True}
    stale = await client.post(f"/ops/v1/approvals/{a_id}/approval", headers=bearer(bob))
    await assert_problem(stale, 409, "approval-precondition-changed", detail_has="500")

    # A requester whose token was revoked meanwhile cannot have its request granted.
    dave, dave_id = await ops(client, "dave")
    asked = await client.delete("/ops/v1/regulator-keys/pta-1", headers=bearer(dave))
    await assert_problem(asked, 409, "illegal-transition", detail_has="already revoked")
    key = {"keyid": "pta-2", "public_key": new_key(), "label": "two"}
    asked = await client.post("/ops/v1/regulator-keys", json=key, headers=bearer(dave))
    asked_id = (await asked.json())["approval"]["id"]
    await client.app[appkeys.COMMANDS].revoke_token(dave_id, actor="test")
    refused = await client.post(f"/ops/v1/approvals/{asked_id}/approval", headers=bearer(bob))
    await assert_problem(refused, 409, "approval-precondition-changed", detail_has="revoked")


async def test_an_ops_token_works_only_once_approved(client: Any) -> None:
    alice, alice_id = await ops(client, "alice")
    bob, _ = await ops(client, "bob")
    resp = await client.post("/ops/v1/ops-tokens", json={"label": "carol"},
                             headers=bearer(alice))
    assert resp.status == 202, await resp.text()
    doc = await resp.json()
    carol = doc["token"]
    refused = await client.get("/ops/v1/approvals", headers=bearer(carol))
    await assert_problem(refused, 401, "invalid-token")
    granted = await client.post(f"/ops/v1/approvals/{doc['approval']['id']}/approval",
                                headers=bearer(bob))
    assert granted.status == 200, await granted.text()
    secret = carol.split("_", 3)[3]
    assert secret not in await granted.text()  # the approver never sees it
    ok = await client.get("/ops/v1/approvals", headers=bearer(carol))
    assert ok.status == 200
    issued = [d for d in await events(client) if d["type"] == "token.issued"]
    assert issued[-1]["actor"] == f"token:{alice_id}" and issued[-1]["role"] == "ops"
    # The secret is nowhere in the database; its hash is, as for every token.
    async with client.app[appkeys.DATABASE].read() as conn:
        stored = await conn.scalar(select(tokens.tokens.c.secret_hash).where(
            tokens.tokens.c.id == doc["approval"]["subject"]["token_id"]))
    assert stored and secret not in stored


async def test_a_rejection_and_a_withdrawal(client: Any) -> None:
    alice, alice_id = await ops(client, "alice")
    bob, bob_id = await ops(client, "bob")
    key = {"keyid": "pta-r", "public_key": new_key(), "label": "r"}
    first = await (await client.post("/ops/v1/regulator-keys", json=key,
                                     headers=bearer(alice))).json()
    url = f"/ops/v1/approvals/{first['approval']['id']}"
    too_long = await client.post(f"{url}/rejection", json={"reason": "x" * 501},
                                 headers=bearer(bob))
    await assert_problem(too_long, 400, "invalid-input", detail_has="reason")
    resp = await client.post(f"{url}/rejection", json={"reason": "not in writing yet"},
                             headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "rejected"
    await assert_problem(await client.post(f"{url}/approval", headers=bearer(bob)), 409,
                         "approval-decided", detail_has="rejected")
    # Whoever asked may withdraw their own request.
    second = await (await client.post("/ops/v1/regulator-keys", json=key,
                                      headers=bearer(alice))).json()
    withdrawn = await client.post(f"/ops/v1/approvals/{second['approval']['id']}/rejection",
                                  headers=bearer(alice))
    assert (await withdrawn.json())["decided_by"] == f"token:{alice_id}"
    rejected = [d for d in await events(client) if d["type"] == "approval.rejected"]
    assert [(d["requested_by"], d["decided_by"], d.get("reason")) for d in rejected] == [
        (f"token:{alice_id}", f"token:{bob_id}", "not in writing yet"),
        (f"token:{alice_id}", f"token:{alice_id}", None),
    ]
    keys = await (await client.get("/ops/v1/regulator-keys", headers=bearer(bob))).json()
    assert keys["items"] == []


async def test_bad_input(client: Any) -> None:
    alice, _ = await ops(client, "alice")
    for days in ("30", 0, 36501, True, None):
        resp = await client.put("/ops/v1/retention", json={"retention_days": days},
                                headers=bearer(alice))
        await assert_problem(resp, 400, "invalid-input", detail_has="retention_days")
    same = await client.put("/ops/v1/retention", json={"retention_days": 365},
                            headers=bearer(alice))
    await assert_problem(same, 400, "invalid-input", detail_has="already 365")
    missing = "01936a5e-8f3c-7d2a-9b1e-4c5d6e7f8a9b"
    await assert_problem(await client.post(f"/ops/v1/approvals/{missing}/approval",
                                           headers=bearer(alice)), 404, "not-found")
    await assert_problem(await client.get("/ops/v1/approvals/nope", headers=bearer(alice)),
                         404, "not-found")
    await assert_problem(await client.get("/ops/v1/approvals?status=maybe",
                                          headers=bearer(alice)), 400, "invalid-input")
    nothing = await client.post("/ops/v1/egress/change-requests", headers=bearer(alice))
    await assert_problem(nothing, 400, "invalid-input", detail_has="no changed egress")
    # A key that could never be registered is refused at once, not left pending.
    dup = {"keyid": "pta-d", "public_key": new_key(), "label": "d"}
    await client.app[appkeys.COMMANDS].add_regulator_key(**dup, actor="test")
    await assert_problem(await client.post("/ops/v1/regulator-keys", json=dup,
                                           headers=bearer(alice)), 409, "duplicate-keyid")
    listed = await (await client.get("/ops/v1/approvals", headers=bearer(alice))).json()
    assert listed["items"] == []


async def test_a_token_a_person_issued_cannot_approve_their_own_request(client: Any) -> None:
    """A token issued by a signed-in user is that person's: not a second principal."""
    approvals = client.app[appkeys.APPROVALS]
    async with client.app[appkeys.DATABASE].write() as conn:
        theirs = await tokens.issue_token(conn, Role.OPS, tenant_id=None, label="mine",
                                          actor="user:u-1", now=client.app[appkeys.CLOCK].now())
    approval = await approvals.request("retention.change",
                                       {"retention_days": 90, "previous_days": 365},
                                       actor=f"token:{theirs.value.token_id}")
    with pytest.raises(SamePrincipal):
        await approvals.grant(approval.id, actor="user:u-1")
    granted, _ = await approvals.grant(approval.id, actor="cli:someone-else")
    assert granted.decided_by == "cli:someone-else"


async def test_retention_changed_in_the_file_is_held_until_approved(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> None:
    first = await aiohttp_client(create_app(make_settings(database_url, approvals=ON),
                                            clock=clock))
    alice, _ = await ops(first, "alice")
    bob, _ = await ops(first, "bob")
    with capture_logs() as logs:
        second = await aiohttp_client(create_app(
            make_settings(database_url, approvals=ON, audit={"retention_days": 30}),
            clock=clock))
    assert {"event": "approvals", "required": True, "expiry_hours": 24.0,
            "log_level": "info"} in logs
    assert any(e["event"] == "retention change held until approved" for e in logs)
    shown = await (await second.get("/ops/v1/retention", headers=bearer(alice))).json()
    assert shown == {"retention_days": 365, "in_settings": 30, "held": True}
    asked = await second.put("/ops/v1/retention", json={"retention_days": 30},
                             headers=bearer(alice))
    approval_id = (await asked.json())["approval"]["id"]
    assert (await second.post(f"/ops/v1/approvals/{approval_id}/approval",
                              headers=bearer(bob))).status == 200
    shown = await (await second.get("/ops/v1/retention", headers=bearer(alice))).json()
    assert shown == {"retention_days": 30, "in_settings": 30, "held": False}
    docs = await events(second)
    assert chain(docs, ("approval.", "retention.", "approvals.")) == [
        "approval.requested", "approval.granted", "retention.changed"]
    changed = docs[-1]
    assert (changed["retention_days"], changed["previous_days"]) == (30, 365)


async def test_switching_approvals_off_is_logged(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> None:
    on = await aiohttp_client(create_app(make_settings(database_url, approvals=ON), clock=clock))
    with capture_logs() as logs:
        off = await aiohttp_client(create_app(
            make_settings(database_url, approvals={"required": False},
                          audit={"retention_days": 30}), clock=clock))
    assert any(e["event"] == "approvals" and e["required"] is False for e in logs)
    alice, _ = await ops(off, "alice")
    # Off: a single operator acts alone, and the file's retention applies at start.
    key = {"keyid": "pta-solo", "public_key": new_key(), "label": "solo"}
    assert (await off.post("/ops/v1/regulator-keys", json=key, headers=bearer(alice))).status == 201
    refused = await off.put("/ops/v1/retention", json={"retention_days": 60},
                            headers=bearer(alice))
    await assert_problem(refused, 409, "approvals-off", detail_has="gateway.toml")
    docs = await events(on)
    configured = [d for d in docs if d["type"] == "approvals.configured"]
    assert [(d["required"], d["expiry_hours"], d["actor"]) for d in configured] == [
        ("false", "24", "settings")]  # the first start recorded "on" without an event
    assert chain(docs, ("retention.",)) == ["retention.changed"]


EGRESS = {"enabled": True, "interface": "eth9", "addresses": ("203.0.113.7",), "ipv6": "off"}
POOLS = {"pools": ("10.100.0.0/24",)}


async def test_changed_egress_settings_are_held_until_approved(
    aiohttp_client: Any, make_settings: Any, database_url: str, clock: FakeClock
) -> None:
    settings = make_settings(database_url, approvals=ON, network=POOLS, egress=EGRESS)
    first = await aiohttp_client(create_app(settings, clock=clock))
    alice, alice_id = await ops(first, "alice")
    bob, _ = await ops(first, "bob")
    await first.close()

    wider = settings.replace(egress={"addresses": ("203.0.113.7", "203.0.113.8"),
                                     "block_size": 128})
    held = await aiohttp_client(create_app(wider, clock=clock))
    in_force = await (await held.get("/ops/v1/egress", headers=bearer(alice))).json()
    assert in_force["addresses"] == ["203.0.113.7"]  # the approved mapping stays
    assert in_force["held"]["addresses"] == ["203.0.113.7", "203.0.113.8"]
    assert held.app[appkeys.EGRESS_HELD] is not None
    asked = await held.post("/ops/v1/egress/change-requests", headers=bearer(alice))
    assert asked.status == 202, await asked.text()
    approval = (await asked.json())["approval"]
    assert approval["subject"]["changed"] == "addresses,block_size"
    own = await held.post(f"/ops/v1/approvals/{approval['id']}/approval", headers=bearer(alice))
    await assert_problem(own, 403, "approval-same-principal")
    granted = await held.post(f"/ops/v1/approvals/{approval['id']}/approval",
                              headers=bearer(bob))
    assert granted.status == 200, await granted.text()
    docs = await events(held)
    assert chain(docs, ("approval.", "egress.")) == [
        "egress.configured", "approval.requested", "approval.granted", "egress.configured"]
    assert docs[-1]["addresses"] == ["203.0.113.7", "203.0.113.8"]
    assert docs[-1]["actor"] == f"token:{alice_id}"
    await held.close()

    # The next start applies it: nothing held, nothing logged again.
    applied = await aiohttp_client(create_app(wider, clock=clock))
    in_force = await (await applied.get("/ops/v1/egress", headers=bearer(alice))).json()
    assert in_force["addresses"] == ["203.0.113.7", "203.0.113.8"]
    assert applied.app[appkeys.EGRESS_HELD] is None and "held" not in in_force
    assert chain(await events(applied), ("egress.",)) == ["egress.configured"] * 2
