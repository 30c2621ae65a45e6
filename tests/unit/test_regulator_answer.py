"""Offline verification of regulator answers (gateway.regulator.answer), against a fake log.

A malicious or broken provider may sign a bad answer with its real keys, so most cases
here re-sign the tampered answer: then exactly the check that matters must fail.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.canonical import canonical_json
from gateway.audit.merkle import EMPTY_ROOT, MemoryTree
from gateway.audit.note import Checkpoint, Ed25519NoteSigner
from gateway.regulator import httpsig
from gateway.regulator.answer import (
    CHECKS,
    AnswerFormatError,
    Exchange,
    Pins,
    TreeHead,
    check_consistency_proof,
    open_checkpoint,
    plan_consistency,
    verify_exchange,
)
from gateway.regulator.client import public_key_b64

ORIGIN = "gw.test/log"
NOW = 1_796_000_000
TENANT_A = "01a22ad1-56ef-77fe-b840-fb5550ada09e"
TENANT_B = "01a22ad1-56ef-77fe-b840-fb5550ada0ff"
PEER = "01a22ad1-5723-77c5-a4dc-35765eb4b070"


def event(i: int, **fields: Any) -> dict[str, Any]:
    base = {"v": 1, "type": "session.started", "ts": f"2026-11-30T03:{i:02d}:00Z",
            "salt": base64.b64encode(bytes([i]) * 16).decode(), "tenant_id": TENANT_A,
            "peer_id": PEER, "endpoint": f"203.0.113.9:{40000 + i}"}
    return {**base, **fields}


@dataclass
class FakeGateway:
    log_key: Ed25519PrivateKey
    response_key: Ed25519PrivateKey
    regulator_key: Ed25519PrivateKey
    tree: MemoryTree
    events: list[dict[str, Any]]

    @property
    def signer(self) -> Ed25519NoteSigner:
        return Ed25519NoteSigner(ORIGIN, self.log_key)

    @property
    def pins(self) -> Pins:
        return Pins.from_strings(self.signer.vkey(), public_key_b64(self.response_key),
                                 "gw1-response")

    def checkpoint(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        return Checkpoint(ORIGIN, size, self.tree.root(size)).sign(self.signer)

    def request(self, query: dict[str, Any]) -> tuple[bytes, httpsig.SignedMessage]:
        body = json.dumps({"request_id": {"country": "PK", "authority": "PTA", "number": "1"},
                           "authorisation": {"reference": "PTA/LI/1", "legal_basis": "PECA",
                                             "valid_from": "2026-11-01T00:00:00Z",
                                             "valid_until": "2026-12-31T00:00:00Z"},
                           "query": query}).encode()
        signed = httpsig.sign_request(private_key=self.regulator_key, keyid="pta-1",
                                      authority="gw.test", body=body, created=NOW,
                                      nonce=secrets.token_urlsafe(16))
        return body, signed

    def answer(self, body: bytes, indexes: list[int]) -> dict[str, Any]:
        doc = json.loads(body)
        return {"request_id": doc["request_id"], "query": doc["query"], "truncated": False,
                "checkpoint": self.checkpoint(), "records": [{
                    "index": i,
                    "leaf": base64.b64encode(canonical_json(self.events[i])).decode(),
                    "event": copy.deepcopy(self.events[i]),
                    "inclusion_proof": [base64.b64encode(h).decode()
                                        for h in self.tree.inclusion_proof(i)],
                } for i in indexes]}

    def exchange(self, body: bytes, signed: httpsig.SignedMessage, answer: dict[str, Any],
                 *, request_signature: bytes | None = None) -> Exchange:
        payload = json.dumps(answer, separators=(",", ":")).encode()
        response = httpsig.sign_response(
            private_key=self.response_key, keyid="gw1-response", status=200, body=payload,
            created=NOW + 1, request_signature=request_signature or signed.signature_bytes)
        return Exchange(url="https://gw.test/regulator/v1/queries",
                        request_headers=tuple(signed.headers().items()), request_body=body,
                        status=200, response_headers=tuple(response.headers().items()),
                        response_body=payload, received_at="2026-11-30T03:20:00Z")


ACTIVITY = {"kind": "activity.tenant", "tenant_id": TENANT_A,
            "from": "2026-11-30T00:00:00Z", "to": "2026-11-30T23:00:00Z"}


@pytest.fixture
def gw() -> FakeGateway:
    events = [event(i) for i in range(11)]
    events[4]["tenant_id"] = TENANT_B
    tree = MemoryTree()
    for e in events:
        tree.append(canonical_json(e))
    return FakeGateway(Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(),
                       Ed25519PrivateKey.generate(), tree, events)


def failed(exchange: Exchange, pins: Pins, now: float | None = NOW) -> dict[str, str]:
    result = verify_exchange(exchange, pins, now=now)
    assert [c.name for c in result.checks] == list(CHECKS)
    return {c.name: c.detail for c in result.failures}


def test_a_faithful_answer_passes_every_check(gw: FakeGateway) -> None:
    body, signed = gw.request(ACTIVITY)
    exchange = gw.exchange(body, signed, gw.answer(body, [0, 3, 10]))
    for now in (NOW + 5, None):
        result = verify_exchange(exchange, gw.pins, now=now)
        assert result.ok, result.reason()
        assert result.reason() == ""
    assert result.tree_head is not None and result.tree_head.size == 11
    assert [r["index"] for r in result.records] == [0, 3, 10]
    again = Exchange.from_document(json.loads(json.dumps(exchange.to_document())))
    assert again == exchange
    assert exchange.to_document()["request"]["body_sha256"] == hashlib.sha256(body).hexdigest()
    empty = gw.exchange(body, signed, gw.answer(body, []))
    assert verify_exchange(empty, gw.pins, now=None).ok


Tamper = Callable[[dict[str, Any]], None]


def _flip_proof(answer: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(answer["records"][1]["inclusion_proof"][0]))
    raw[0] ^= 1
    answer["records"][1]["inclusion_proof"][0] = base64.b64encode(raw).decode()


@pytest.mark.parametrize(("tamper", "check", "detail"), [
    (_flip_proof, "inclusion", "record 3"),
    (lambda a: a["records"][1]["inclusion_proof"].pop(), "inclusion", "too few"),
    (lambda a: a["records"][1].update(index=2), "inclusion", "record 2"),
    (lambda a: a["records"][0]["event"].update(endpoint="198.51.100.1:1"), "leaves",
     "differs"),
    (lambda a: a["records"][0].update(leaf=base64.b64encode(
        json.dumps(a["records"][0]["event"]).encode()).decode()), "leaves", "canonical"),
    (lambda a: a["records"][0]["event"].update(v=True), "leaves", "not allowed"),
    (lambda a: a["query"].update(tenant_id=TENANT_B), "binding", "query"),
    (lambda a: a["request_id"].update(number="2"), "binding", "request_id"),
    (lambda a: a.pop("truncated"), "answer-format", "exactly"),
    (lambda a: a["records"].append({"index": 1}), "answer-format", "records"),
])
def test_a_signed_but_wrong_answer_fails_the_right_check(
    gw: FakeGateway, tamper: Tamper, check: str, detail: str
) -> None:
    body, signed = gw.request(ACTIVITY)
    answer = gw.answer(body, [0, 3, 10])
    tamper(answer)
    failures = failed(gw.exchange(body, signed, answer), gw.pins)
    assert check in failures, failures
    assert detail in failures[check]
    if check != "answer-format":
        assert set(failures) <= {check, "inclusion"}


def test_another_tenants_record_is_irrelevant_to_an_activity_query(gw: FakeGateway) -> None:
    body, signed = gw.request(ACTIVITY)
    failures = failed(gw.exchange(body, signed, gw.answer(body, [3, 4])), gw.pins)
    assert list(failures) == ["relevance"]
    assert "record 4" in failures["relevance"] and TENANT_B in failures["relevance"]
    late = {**ACTIVITY, "to": "2026-11-30T03:05:00Z"}
    body, signed = gw.request(late)
    failures = failed(gw.exchange(body, signed, gw.answer(body, [3, 6])), gw.pins)
    assert list(failures) == ["relevance"] and "window" in failures["relevance"]


def test_tunnel_ip_relevance(gw: FakeGateway) -> None:
    gw.events.append({"v": 1, "type": "peer.provisioned", "ts": "2026-11-30T04:00:00Z",
                      "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "tenant_id": TENANT_A,
                      "peer_id": PEER, "tunnel_ips": ["10.100.0.7", "fd00:100::7"]})
    gw.tree.append(canonical_json(gw.events[-1]))
    for ip, ok in (("10.100.0.7", True), ("fd00:100:0::7", True), ("10.100.0.8", False)):
        body, signed = gw.request({"kind": "attribution.tunnel_ip", "ip": ip,
                                   "at": "2026-11-30T05:00:00Z"})
        failures = failed(gw.exchange(body, signed, gw.answer(body, [11])), gw.pins)
        assert (failures == {}) is ok, failures


def test_restated_holding_answers_only_from_its_start(gw: FakeGateway) -> None:
    gw.events.append({"v": 1, "type": "peer.reaffirmed", "ts": "2027-01-01T00:00:00Z",
                      "salt": "AAAAAAAAAAAAAAAAAAAAAA==", "tenant_id": TENANT_A,
                      "peer_id": PEER, "tunnel_ips": ["10.100.0.7"],
                      "held_since": "2026-11-30T04:00:00Z", "reason": "retention"})
    gw.tree.append(canonical_json(gw.events[-1]))
    for ip, at, ok in (("10.100.0.7", "2026-11-30T05:00:00Z", True),
                       ("10.100.0.7", "2026-11-30T03:00:00Z", False),
                       ("10.100.0.8", "2026-11-30T05:00:00Z", False)):
        body, signed = gw.request({"kind": "attribution.tunnel_ip", "ip": ip, "at": at})
        failures = failed(gw.exchange(body, signed, gw.answer(body, [11])), gw.pins)
        assert (failures == {}) is ok, failures
        assert ok or list(failures) == ["relevance"]


def test_checkpoint_swaps_are_caught(gw: FakeGateway) -> None:
    body, signed = gw.request(ACTIVITY)
    answer = gw.answer(body, [0, 3])
    other = Ed25519NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    forged = {**answer, "checkpoint": Checkpoint(ORIGIN, 11, gw.tree.root()).sign(other)}
    failures = failed(gw.exchange(body, signed, forged), gw.pins)
    assert set(failures) == {"checkpoint-signature", "inclusion"}
    assert "no signature from a trusted key" in failures["checkpoint-signature"]
    older = {**answer, "checkpoint": gw.checkpoint(8)}  # genuine, but not what the proofs fit
    failures = failed(gw.exchange(body, signed, older), gw.pins)
    assert list(failures) == ["inclusion"]
    foreign = Ed25519NoteSigner("other.test/log", gw.log_key)
    renamed = {**answer, "checkpoint": Checkpoint("other.test/log", 11, gw.tree.root())
               .sign(foreign)}
    assert "checkpoint-signature" in failed(gw.exchange(body, signed, renamed), gw.pins)


def test_the_response_signature_binds_key_body_and_request(gw: FakeGateway) -> None:
    body, signed = gw.request(ACTIVITY)
    exchange = gw.exchange(body, signed, gw.answer(body, [0]))

    changed = replace(exchange, response_body=exchange.response_body.replace(b"03:00", b"03:01"))
    failures = failed(changed, gw.pins)
    assert "digest" in failures["response-signature"]

    stranger = Pins.from_strings(gw.signer.vkey(),
                                 public_key_b64(Ed25519PrivateKey.generate()), None)
    assert "does not verify" in failed(exchange, stranger)["response-signature"]
    renamed = replace(gw.pins, response_keyid="gw2-response")
    assert "unknown" in failed(exchange, renamed)["response-signature"]

    # An answer to someone else's request (a replayed response) does not cover ours.
    _, other = gw.request(ACTIVITY)
    misbound = gw.exchange(body, signed, gw.answer(body, [0]),
                           request_signature=other.signature_bytes)
    assert list(failed(misbound, gw.pins)) == ["response-signature"]

    assert "created" in failed(exchange, gw.pins, now=NOW + 3600)["response-signature"]
    assert failed(exchange, gw.pins, now=None) == {}

    refused = replace(exchange, status=403)
    failures = failed(refused, gw.pins, now=None)
    assert "status is 403" in failures["answer-format"] and "inclusion" in failures


def test_a_damaged_saved_request_is_reported(gw: FakeGateway) -> None:
    body, signed = gw.request(ACTIVITY)
    exchange = gw.exchange(body, signed, gw.answer(body, [0]))
    edited = replace(exchange, request_body=body.replace(b"PTA/LI/1", b"PTA/LI/2"))
    failures = failed(edited, gw.pins)
    assert "request" in failures and "digest" in failures["request"]
    unsigned = replace(exchange, request_headers=tuple(
        (k, v) for k, v in exchange.request_headers if k != "Signature"))
    assert {"request", "response-signature"} <= set(failed(unsigned, gw.pins))


@pytest.mark.parametrize("change", [
    lambda d: d.update(format="something/2"),
    lambda d: d.pop("response"),
    lambda d: d["response"].update(status="200"),
    lambda d: d["response"].update(body="not base64!"),
    lambda d: d["request"].update(headers={"Signature": "x"}),
    lambda d: d.update(url=7),
])
def test_unreadable_saved_answers_are_refused(gw: FakeGateway, change: Any) -> None:
    body, signed = gw.request(ACTIVITY)
    doc = gw.exchange(body, signed, gw.answer(body, [0])).to_document()
    change(doc)
    with pytest.raises(AnswerFormatError):
        Exchange.from_document(doc)


def test_pins_from_the_keys_document(gw: FakeGateway) -> None:
    doc = gw.pins.keys_document()
    assert Pins.from_keys_document(copy.deepcopy(doc)) == gw.pins
    assert doc["log"] == {"origin": ORIGIN, "vkey": gw.signer.vkey()}
    for bad in ({}, {"log": {"vkey": gw.signer.vkey()}},
                {**doc, "log": {"origin": "x", "vkey": gw.signer.vkey()}},
                {**doc, "response": {"public_key": "AAAA"}},
                {**doc, "log": {"vkey": "not-a-vkey"}}):
        with pytest.raises(AnswerFormatError):
            Pins.from_keys_document(bad)


def head(tree: MemoryTree, size: int, signer: Ed25519NoteSigner) -> TreeHead:
    return open_checkpoint(Checkpoint(ORIGIN, size, tree.root(size)).sign(signer),
                           signer.verifier)


def test_consistency_decisions(gw: FakeGateway) -> None:
    signer = gw.signer
    old, new = head(gw.tree, 5, signer), head(gw.tree, 11, signer)
    first = plan_consistency(None, new)
    assert first is not None and first.ok and "first" in first.detail
    assert plan_consistency(old, new) is None  # needs a proof
    proof = gw.tree.consistency_proof(5, 11)
    assert check_consistency_proof(old, new, proof).ok
    assert not check_consistency_proof(old, new, proof[:-1]).ok
    assert not check_consistency_proof(head(gw.tree, 4, signer), new, proof).ok

    shrank = plan_consistency(new, old)
    assert shrank is not None and not shrank.ok and "shrank" in shrank.detail
    same = plan_consistency(new, new)
    assert same is not None and same.ok
    fork = replace(new, root=hashlib.sha256(b"other history").digest())
    forked = plan_consistency(new, fork)
    assert forked is not None and not forked.ok and "forked" in forked.detail
    elsewhere = replace(new, origin="other.test/log")
    assert not (plan_consistency(old, elsewhere) or pytest.fail("decided")).ok
    empty = TreeHead(ORIGIN, 0, EMPTY_ROOT, "")
    grew = plan_consistency(empty, new)
    assert grew is not None and grew.ok


@pytest.mark.parametrize("raw", [bytes([1]) + bytes(31), bytes(32)], ids=["identity", "zero"])
def test_pins_with_a_degenerate_response_key_are_refused(gw: FakeGateway, raw: bytes) -> None:
    with pytest.raises(AnswerFormatError, match="small order"):
        Pins.from_strings(gw.signer.vkey(), base64.b64encode(raw).decode())
