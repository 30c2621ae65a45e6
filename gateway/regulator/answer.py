"""Verifying a regulator answer (DESIGN section 6): pure checks, no I/O, no logging.

An :class:`Exchange` is one query as sent and answered, kept byte for byte so it can be
re-verified offline years later.  :func:`verify_exchange` runs every check and reports
each one (it does not stop at the first failure, so a tampered file names every check
it breaks):

``request``
    the saved request body matches its own Content-Digest, and carries a ``reg`` signature;
``response-signature``
    the RFC 9421 ``gw`` signature verifies with the pinned response key and covers our
    request's ``reg`` signature (so it answers this request and no other);
``answer-format``
    the body is the answer document of DESIGN section 6;
``binding``
    the answer echoes our request's ``request_id`` and ``query``;
``checkpoint-signature``
    the checkpoint is a C2SP signed note by the pinned log key (vkey), for its origin;
``leaves``
    every record's ``leaf`` is exactly the canonical JSON of its ``event``;
``inclusion``
    every record's RFC 9162 inclusion proof leads from SHA-256(0x00 || leaf) at its index
    to the checkpoint's root;
``relevance``
    every record is one the query could select (subject, window, address); for
    ``attribution.egress`` the port-block mapping is recomputed from the returned
    ``egress.configured`` leaf and must name the tunnel address the returned grant holds
    (and agree with the answer's ``derivation``, when it gives one).

Consistency with the last checkpoint the client saw is the caller's job (it needs the
network); :func:`plan_consistency` and :func:`check_consistency_proof` do the pure part.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit import merkle
from gateway.audit.canonical import CanonicalError, canonical_json, parse_canonical, parse_time
from gateway.audit.note import Ed25519NoteVerifier, NoteError, SignedCheckpoint
from gateway.crypto import ed25519_checks
from gateway.egress.mapping import EgressConfigError, EgressMap
from gateway.regulator import httpsig
from gateway.regulator.digest import verify_content_digest
from gateway.regulator.structured import Item, StructuredFieldError, parse_dictionary
from provisioning import validation
from provisioning.errors import InvalidInput

__all__ = [
    "CHECKS",
    "SAVED_FORMAT",
    "AnswerFormatError",
    "Check",
    "Exchange",
    "Pins",
    "TreeHead",
    "Verification",
    "check_consistency_proof",
    "open_checkpoint",
    "plan_consistency",
    "verify_exchange",
]

SAVED_FORMAT = "vpngw-regulator-answer/1"
CHECKS = (
    "request",
    "response-signature",
    "answer-format",
    "binding",
    "checkpoint-signature",
    "leaves",
    "inclusion",
    "relevance",
)


class AnswerFormatError(ValueError):
    """A saved answer, pin file or key string cannot be read; the message says why."""


def _b64decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise AnswerFormatError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AnswerFormatError(f"{what} is not valid standard base64") from exc


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --------------------------------------------------------------------------- pinned keys


@dataclass(frozen=True)
class Pins:
    """The provider keys the regulator trusts, obtained once and out of band.

    ``response_keyid`` is optional: with it, a response signed under another keyid is
    refused even if the key matched (it never will); without it any keyid is accepted
    as long as the signature verifies with ``response_key``.
    """

    log: Ed25519NoteVerifier
    response_key: Ed25519PublicKey
    response_keyid: str | None = None

    @classmethod
    def from_strings(
        cls, vkey: str, response_key: str, response_keyid: str | None = None
    ) -> Pins:
        try:
            log = Ed25519NoteVerifier.from_vkey(vkey)
        except NoteError as exc:
            raise AnswerFormatError(f"log vkey: {exc}") from exc
        raw = _b64decode(response_key.strip(), "response key")
        if len(raw) != 32:
            raise AnswerFormatError(
                f"response key must be the base64 of 32 raw Ed25519 bytes, got {len(raw)} bytes"
            )
        try:
            key = ed25519_checks.load_public_key(raw)
        except ValueError as exc:
            raise AnswerFormatError(
                f"response key refused: {exc}; pin the key the provider states in writing"
            ) from exc
        return cls(log, key, response_keyid or None)

    @classmethod
    def from_keys_document(cls, doc: object) -> Pins:
        """From the JSON of ``GET /regulator/v1/keys`` (also the pin file's format)."""
        try:
            assert isinstance(doc, dict)
            vkey, response = doc["log"]["vkey"], doc["response"]
            public_key, keyid = response["public_key"], response.get("keyid")
            assert isinstance(vkey, str) and isinstance(public_key, str)
            assert keyid is None or isinstance(keyid, str)
        except (AssertionError, KeyError, TypeError) as exc:
            raise AnswerFormatError(
                'keys document must look like {"log": {"origin": ..., "vkey": ...}, '
                '"response": {"keyid": ..., "public_key": ...}}'
            ) from exc
        pins = cls.from_strings(vkey, public_key, keyid)
        origin = doc["log"].get("origin")
        if origin is not None and origin != pins.log.name:
            raise AnswerFormatError(
                f"keys document names origin {origin!r} but its vkey is for {pins.log.name!r}"
            )
        return pins

    @property
    def response_key_b64(self) -> str:
        return _b64(self.response_key.public_bytes(Encoding.Raw, PublicFormat.Raw))

    def keys_document(self) -> dict[str, Any]:
        """The pin file: the same shape as ``GET /regulator/v1/keys``."""
        return {
            "log": {"origin": self.log.name, "vkey": self.log.vkey()},
            "response": {"keyid": self.response_keyid, "public_key": self.response_key_b64},
        }

    def resolve_response_key(self, keyid: str) -> Ed25519PublicKey | None:
        if self.response_keyid is not None and keyid != self.response_keyid:
            return None
        return self.response_key


# --------------------------------------------------------------------------- tree heads


@dataclass(frozen=True)
class TreeHead:
    """A verified checkpoint: origin, size, root and the signed note that carried them."""

    origin: str
    size: int
    root: bytes
    note: str

    def summary(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size, "root": _b64(self.root)}


def open_checkpoint(note: str, log: Ed25519NoteVerifier) -> TreeHead:
    """Verify a signed checkpoint note against the pinned log key; raise NoteError."""
    signed = SignedCheckpoint.from_text(note, log)
    cp = signed.checkpoint
    return TreeHead(cp.origin, cp.size, cp.root_hash, note)


# --------------------------------------------------------------------------- exchanges

Pairs = tuple[tuple[str, str], ...]


def _pairs(value: object, what: str) -> Pairs:
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in value
    ):
        raise AnswerFormatError(f"{what} must be a list of [name, value] string pairs")
    return tuple((p[0], p[1]) for p in value)


def _header(pairs: Pairs, name: str) -> str | None:
    wanted = name.lower()
    values = [v for n, v in pairs if n.lower() == wanted]
    return ", ".join(values) if values else None


@dataclass(frozen=True)
class Exchange:
    """One query as sent and answered, byte for byte (the ``--save`` file)."""

    url: str
    request_headers: Pairs
    request_body: bytes
    status: int
    response_headers: Pairs
    response_body: bytes
    received_at: str = ""

    def request_signature(self) -> bytes:
        """The raw bytes of our request's ``reg`` signature (what the answer must cover)."""
        value = _header(self.request_headers, "signature")
        if value is None:
            raise AnswerFormatError("the saved request has no Signature header")
        try:
            member = parse_dictionary(value).get(httpsig.REQUEST_LABEL)
        except StructuredFieldError as exc:
            raise AnswerFormatError(
                f"the saved request's Signature header is invalid: {exc}") from exc
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise AnswerFormatError(
                f"the saved request's Signature header has no {httpsig.REQUEST_LABEL!r} signature"
            )
        return member.value

    @property
    def body_sha256(self) -> str:
        """SHA-256 (hex) of the exact request body, as logged in the ``regulator.query`` event."""
        return hashlib.sha256(self.request_body).hexdigest()

    def to_document(self) -> dict[str, Any]:
        return {
            "format": SAVED_FORMAT,
            "url": self.url,
            "received_at": self.received_at,
            "request": {
                "headers": [list(p) for p in self.request_headers],
                "body": _b64(self.request_body),
                "body_sha256": self.body_sha256,
            },
            "response": {
                "status": self.status,
                "headers": [list(p) for p in self.response_headers],
                "body": _b64(self.response_body),
            },
        }

    @classmethod
    def from_document(cls, doc: object) -> Exchange:
        if not isinstance(doc, dict) or doc.get("format") != SAVED_FORMAT:
            raise AnswerFormatError(f"not a saved answer (expected format {SAVED_FORMAT!r})")
        request, response = doc.get("request"), doc.get("response")
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise AnswerFormatError("a saved answer needs request and response objects")
        status = response.get("status")
        if type(status) is not int:
            raise AnswerFormatError("response.status must be an integer")
        url, received_at = doc.get("url", ""), doc.get("received_at", "")
        if not isinstance(url, str) or not isinstance(received_at, str):
            raise AnswerFormatError("url and received_at must be strings")
        return cls(
            url=url,
            request_headers=_pairs(request.get("headers"), "request.headers"),
            request_body=_b64decode(request.get("body"), "request.body"),
            status=status,
            response_headers=_pairs(response.get("headers"), "response.headers"),
            response_body=_b64decode(response.get("body"), "response.body"),
            received_at=received_at,
        )


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Check:
    """One named check and its outcome; ``detail`` says what was found."""

    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass
class Verification:
    """Every check run over an exchange, plus what the answer said (if readable)."""

    checks: list[Check] = field(default_factory=list)
    answer: dict[str, Any] | None = None
    tree_head: TreeHead | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def reason(self) -> str:
        """One line naming every failed check (empty when all passed)."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failures)

    @property
    def records(self) -> list[dict[str, Any]]:
        found = (self.answer or {}).get("records")
        return [r for r in found if isinstance(r, dict)] if isinstance(found, list) else []

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(Check(name, ok, detail))


def _check_request(exchange: Exchange, result: Verification) -> dict[str, Any] | None:
    try:
        verify_content_digest(
            _header(exchange.request_headers, "content-digest"), exchange.request_body
        )
        exchange.request_signature()
        doc = json.loads(exchange.request_body)
        if not isinstance(doc, dict):
            raise ValueError("the request body is not a JSON object")
    except (httpsig.SignatureError, AnswerFormatError, ValueError) as exc:
        result.add("request", False, f"the saved request is damaged: {exc}")
        return None
    result.add("request", True, f"body sha256 {exchange.body_sha256}")
    return doc


def _check_response_signature(
    exchange: Exchange, pins: Pins, now: float | None, result: Verification
) -> None:
    try:
        request_signature = exchange.request_signature()
        verified = httpsig.verify_response(
            headers=exchange.response_headers,
            status=exchange.status,
            body=exchange.response_body,
            now=now,
            resolve_key=pins.resolve_response_key,
            request_signature=request_signature,
        )
    except (httpsig.SignatureError, AnswerFormatError) as exc:
        result.add("response-signature", False, str(exc))
        return
    result.add(
        "response-signature", True,
        f"label {httpsig.RESPONSE_LABEL}, keyid {verified.keyid}, created {verified.created}, "
        "covers our request signature",
    )


_ANSWER_FIELDS = {"request_id", "query", "truncated", "checkpoint", "records"}
_ANSWER_OPTIONAL = _ANSWER_FIELDS | {"derivation"}
_RECORD_FIELDS = {"index", "leaf", "event", "inclusion_proof"}


def _check_format(exchange: Exchange, result: Verification) -> dict[str, Any] | None:
    problem = ""
    doc: Any = None
    if exchange.status != 200:
        problem = f"status is {exchange.status}, not 200"
    else:
        try:
            doc = json.loads(exchange.response_body)
        except ValueError as exc:
            problem = f"body is not JSON: {exc}"
    if not problem:
        if not isinstance(doc, dict) or not _ANSWER_FIELDS <= set(doc) <= _ANSWER_OPTIONAL:
            problem = ("body must be an object with exactly " + ", ".join(sorted(_ANSWER_FIELDS))
                       + " (and optionally derivation)")
        elif not isinstance(doc["checkpoint"], str) or not isinstance(doc["truncated"], bool):
            problem = "checkpoint must be a string and truncated a boolean"
        elif not isinstance(doc["records"], list) or not all(
            isinstance(r, dict) and set(r) == _RECORD_FIELDS for r in doc["records"]
        ):
            problem = "records must be objects with exactly " + ", ".join(sorted(_RECORD_FIELDS))
    if problem:
        result.add("answer-format", False, problem)
        return None
    result.add("answer-format", True, f"{len(doc['records'])} record(s), "
               f"truncated={str(doc['truncated']).lower()}")
    assert isinstance(doc, dict)
    return doc


def _check_binding(request: dict[str, Any] | None, answer: dict[str, Any],
                   result: Verification) -> None:
    if request is None:
        result.add("binding", False, "the saved request cannot be read, so it cannot be compared")
        return
    for name in ("request_id", "query"):
        if answer.get(name) != request.get(name):
            result.add("binding", False,
                       f"the answer's {name} {answer.get(name)!r} is not the one we sent "
                       f"({request.get(name)!r})")
            return
    result.add("binding", True, "request_id and query are the ones sent")


def _check_checkpoint(answer: dict[str, Any], pins: Pins, result: Verification) -> None:
    try:
        head = open_checkpoint(answer["checkpoint"], pins.log)
    except NoteError as exc:
        result.add("checkpoint-signature", False, f"{exc} (pinned log key {pins.log.vkey()})")
        return
    result.tree_head = head
    result.add("checkpoint-signature", True,
               f"signed by {pins.log.name}+{pins.log.key_id.hex()}: size {head.size}, "
               f"root {_b64(head.root)}")


def _record_leaf(record: dict[str, Any]) -> tuple[int, bytes]:
    index = record["index"]
    if type(index) is not int or index < 0:
        raise ValueError(f"index {index!r} is not a leaf index")
    return index, _b64decode(record["leaf"], f"record {index} leaf")


def _check_leaves(records: Sequence[dict[str, Any]], result: Verification) -> None:
    for record in records:
        try:
            _, leaf = _record_leaf(record)
            if parse_canonical(leaf) != record["event"]:
                raise ValueError("the event differs from the leaf bytes")
            # Equal dicts can still differ on the wire (True == 1 in Python): re-encode.
            if canonical_json(record["event"]) != leaf:
                raise ValueError("the leaf is not the canonical JSON of the event")
        except (AnswerFormatError, CanonicalError, ValueError) as exc:
            where = record.get("index")
            result.add("leaves", False, f"record {where}: {exc}")
            return
    result.add("leaves", True, f"{len(records)} leaf/leaves are the canonical JSON of their event")


def _check_inclusion(records: Sequence[dict[str, Any]], head: TreeHead | None,
                     result: Verification) -> None:
    if head is None:
        result.add("inclusion", False, "no verified checkpoint to check the proofs against")
        return
    for record in records:
        where = record.get("index")
        try:
            index, leaf = _record_leaf(record)
            raw_proof = record["inclusion_proof"]
            if not isinstance(raw_proof, list):
                raise ValueError("inclusion_proof must be a list")
            proof = [_b64decode(p, f"record {index} proof element") for p in raw_proof]
            merkle.verify_inclusion(merkle.leaf_hash(leaf), index, head.size, proof, head.root)
        except (AnswerFormatError, merkle.MerkleError, ValueError) as exc:
            result.add("inclusion", False, f"record {where}: {exc}")
            return
    result.add("inclusion", True,
               f"{len(records)} proof(s) lead to the root of tree size {head.size}")


def _window(query: dict[str, Any]) -> tuple[datetime, datetime]:
    return (validation.timestamp("query.from", query["from"]),
            validation.timestamp("query.to", query["to"]))


def _relevant(query: dict[str, Any]) -> Callable[[dict[str, Any]], str | None]:
    """A function naming why an event could not answer ``query`` (None if it could)."""
    kind = query.get("kind")
    if kind in ("activity.tenant", "activity.peer"):
        subject = "tenant_id" if kind == "activity.tenant" else "peer_id"
        start, end = _window(query)

        def activity(event: dict[str, Any]) -> str | None:
            if event.get(subject) != query[subject]:
                return f"its {subject} is {event.get(subject)!r}, not {query[subject]!r}"
            ts = parse_time(event["ts"])
            if not start <= ts <= end:
                return f"its time {event['ts']} is outside the query window"
            return None

        return activity
    if kind == "attribution.tunnel_ip":
        ip = ipaddress.ip_address(query["ip"])
        at = validation.timestamp("query.at", query["at"])

        def tunnel(event: dict[str, Any]) -> str | None:
            if event.get("type") in ("peer.provisioned", "peer.reaffirmed"):
                held = {ipaddress.ip_address(a) for a in event.get("tunnel_ips", [])}
                if ip not in held:
                    return f"the peer was not given {ip}"
                # A restatement (made before retention erased the provisioning) says
                # since when the peer holds the address.
                since = event.get("held_since")
                if isinstance(since, str) and parse_time(since) > at:
                    return f"the peer holds {ip} only since {since}"
                return None
            if event.get("type") == "address.released":
                return None if ipaddress.ip_address(event["address"]) == ip else (
                    f"it releases {event['address']}, not {ip}")
            return None

        return tunnel
    return lambda event: None


def _egress_reason(query: dict[str, Any], answer: dict[str, Any],
                   records: Sequence[dict[str, Any]]) -> str | None:
    """Why the records do not attribute ip:port at `at` by the section 8 mapping (or None)."""
    events = [r["event"] for r in records]
    # egress.reaffirmed restates the mapping (before retention erased the original),
    # saying since when it holds.
    mappings = ("egress.configured", "egress.reaffirmed")
    configured = [e for e in events if e.get("type") in mappings]
    if not records:
        return "derivation without records" if "derivation" in answer else None
    if len(configured) != 1:
        return f"expected one egress.configured record, found {len(configured)}"
    at = validation.timestamp("query.at", query["at"])
    since = configured[0].get("configured_at", configured[0]["ts"])
    if parse_time(since) > at:
        return "the egress.configured record was logged after the queried time"
    try:
        mapping = EgressMap.from_event(configured[0])
    except EgressConfigError as exc:
        return f"the egress.configured record cannot be read: {exc}"
    derivation = mapping.derive(ipaddress.ip_address(query["ip"]), int(query["port"]))
    if derivation is None:
        return f"{query['ip']}:{query['port']} lies in no block of the returned mapping"
    claimed = answer.get("derivation")
    if claimed is not None and claimed != derivation.as_dict():
        return (f"the answer's derivation {claimed} differs from the recomputed "
                f"{derivation.as_dict()}")
    tunnel = derivation.tunnel_ip
    grants = [e for e in events
              if e.get("type") in ("peer.provisioned", "peer.key_rotated", "peer.reaffirmed")]
    if not any(tunnel in {ipaddress.ip_address(a) for a in e.get("tunnel_ips", [])}
               for e in grants):
        return f"no returned grant holds the derived tunnel address {tunnel}"
    why_not = _relevant({"kind": "attribution.tunnel_ip", "ip": str(tunnel), "at": query["at"]})
    for record in records:
        if record["event"].get("type") not in mappings:
            reason = why_not(record["event"])
            if reason is not None:
                return f"record {record.get('index')}: {reason}"
    return None


def _check_relevance(request: dict[str, Any] | None, answer: dict[str, Any],
                     records: Sequence[dict[str, Any]], result: Verification) -> None:
    query = (request or {}).get("query")
    if not isinstance(query, dict):
        result.add("relevance", False, "the saved request has no query to compare with")
        return
    if query.get("kind") == "attribution.egress":
        try:
            reason = _egress_reason(query, answer, records)
        except (KeyError, TypeError, ValueError, CanonicalError, InvalidInput) as exc:
            reason = f"records cannot be compared with the query: {exc}"
        if reason is not None:
            result.add("relevance", False, reason)
        else:
            result.add("relevance", True, "the mapping recomputed from the egress.configured "
                       "record gives the tunnel address the returned grant holds")
        return
    try:
        why_not = _relevant(query)
        for record in records:
            event = record["event"]
            if not isinstance(event, dict):
                raise ValueError(f"record {record.get('index')}: event is not an object")
            reason = why_not(event)
            if reason is not None:
                result.add("relevance", False, f"record {record.get('index')} "
                           f"({event.get('type')}) does not answer the query: {reason}")
                return
    except (KeyError, TypeError, ValueError, CanonicalError, InvalidInput) as exc:
        result.add("relevance", False, f"records cannot be compared with the query: {exc}")
        return
    result.add("relevance", True, f"every record matches the {query.get('kind')} query")


def verify_exchange(exchange: Exchange, pins: Pins, *, now: float | None) -> Verification:
    """Run every check over a query exchange; see the module docstring for the list.

    ``now`` is the client clock (Unix seconds) for a fresh answer, or ``None`` to verify
    an archived answer (the response's ``created`` is then not compared with a clock).
    """
    result = Verification()
    request = _check_request(exchange, result)
    _check_response_signature(exchange, pins, now, result)
    answer = _check_format(exchange, result)
    if answer is None:
        for name in CHECKS[3:]:
            result.add(name, False, "not checked: the answer is not readable")
        return result
    result.answer = answer
    records = answer["records"]
    _check_binding(request, answer, result)
    _check_checkpoint(answer, pins, result)
    _check_leaves(records, result)
    _check_inclusion(records, result.tree_head, result)
    _check_relevance(request, answer, records, result)
    return result


# --------------------------------------------------------------------------- consistency


def plan_consistency(old: TreeHead | None, new: TreeHead) -> Check | None:
    """Decide what needs no proof; ``None`` means: fetch a proof from old.size to new.size.

    ``old`` is the last checkpoint this client accepted for the log (``None`` the first
    time: trust on first use).  A smaller tree than before means the log shrank, and the
    same size with another root means it forked: both are failures.
    """
    if old is None:
        return Check("consistency", True,
                     f"first checkpoint seen for {new.origin}: size {new.size} stored "
                     "(trust on first use)")
    if old.origin != new.origin:
        return Check("consistency", False,
                     f"checkpoint origin {new.origin!r} is not the stored {old.origin!r}")
    if new.size < old.size:
        return Check("consistency", False,
                     f"the log shrank: tree size {new.size} is smaller than the size {old.size} "
                     "seen before")
    if new.size == old.size:
        if new.root != old.root:
            return Check("consistency", False,
                         f"the log forked: tree size {new.size} has root {_b64(new.root)}, "
                         f"but {_b64(old.root)} was seen before")
        return Check("consistency", True, f"unchanged since last seen (size {new.size})")
    if old.size == 0:
        if old.root != merkle.EMPTY_ROOT:
            return Check("consistency", False, "the stored empty tree has a non-empty root")
        return Check("consistency", True, f"grew from the empty tree to size {new.size}")
    return None


def check_consistency_proof(old: TreeHead, new: TreeHead, proof: Sequence[bytes]) -> Check:
    """Verify the RFC 9162 consistency proof from the stored tree head to the new one."""
    try:
        merkle.verify_consistency(old.size, new.size, old.root, new.root, list(proof))
    except merkle.MerkleError as exc:
        return Check("consistency", False,
                     f"the log is not append-only from size {old.size} to {new.size}: {exc}")
    return Check("consistency", True,
                 f"size {old.size} -> {new.size} proven append-only ({len(proof)} hashes)")
