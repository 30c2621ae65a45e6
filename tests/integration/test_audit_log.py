"""The audit log the running service builds: every proof it serves verifies (SQLite, PostgreSQL).

Events come from real use-cases over HTTP; the sequencer is drained; then every entry's
inclusion proof, every pair of checkpoints' consistency proof and every checkpoint note
is checked, with the project's verifier and with an independent one written here from
RFC 9162 and C2SP using nothing but hashlib and cryptography.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from itertools import combinations
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from gateway.app import create_app
from gateway.audit import merkle
from gateway.audit.note import Ed25519NoteVerifier, SignedCheckpoint
from gateway.audit.schema import checkpoints
from gateway.audit.verify import verify_log
from gateway.http import appkeys
from gateway.regulator import httpsig
from gateway.settings import Settings
from tests.conftest import FakeClock
from tests.helpers import bearer, create_peer, ops_token, verified_tenant

Client = TestClient[Any, Any]


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: FakeClock) -> Client:
    # Every sequencer pass signs: many checkpoints, for the pairwise consistency checks.
    every_pass = settings.replace(audit={"checkpoint_seconds": 0})
    client: Client = await aiohttp_client(create_app(every_pass, clock=clock))
    return client


async def populate(client: Client, clock: FakeClock) -> list[dict[str, Any]]:
    """Tenants, tokens and peers through the API; sequenced in several batches."""
    ops = await ops_token(client)
    made = []
    for i in range(3):
        tenant, token = await verified_tenant(client, ops, legal_name=f"Log Test {i} Ltd",
                                              registration_number=f"LT-{i}")
        for k in range(2):
            await create_peer(client, token, name=f"device-{k}")
            clock.advance(seconds=30)
        await client.app[appkeys.SEQUENCER].drain()
        made.append(tenant)
    return made


async def published_verifier(client: Client) -> Ed25519NoteVerifier:
    keys = await (await client.get("/regulator/v1/keys")).json()
    verifier = Ed25519NoteVerifier.from_vkey(keys["log"]["vkey"])
    assert verifier.name == keys["log"]["origin"] == client.app[appkeys.SETTINGS].audit.origin
    return verifier


async def test_every_inclusion_proof_verifies_against_the_latest_checkpoint(
    client: Client, clock: FakeClock
) -> None:
    await populate(client, clock)
    audit = client.app[appkeys.AUDIT_LOG]
    verifier = await published_verifier(client)
    size, note = await audit.latest_checkpoint()
    signed = SignedCheckpoint.from_text(note, verifier).checkpoint
    assert signed.size == size == await audit.size() >= 15
    proofs = await audit.inclusion_proofs(list(range(size)), size)
    entries = await audit.entries(list(range(size)))
    assert [e.index for e in entries] == list(range(size))
    for entry in entries:
        assert entry.leaf is not None and merkle.leaf_hash(entry.leaf) == entry.leaf_hash
        merkle.verify_inclusion(entry.leaf_hash, entry.index, size, proofs[entry.index],
                                signed.root_hash)
        # and not for any other position
        with pytest.raises(merkle.InclusionProofError):
            merkle.verify_inclusion(entry.leaf_hash, (entry.index + 1) % size, size,
                                    proofs[entry.index], signed.root_hash)
    report = await verify_log(audit.db, verifier=verifier, origin=signed.origin)
    assert report.ok and report.entries == size and report.root == signed.root_hash


async def test_every_pair_of_checkpoints_is_consistent(client: Client, clock: FakeClock) -> None:
    await populate(client, clock)
    audit = client.app[appkeys.AUDIT_LOG]
    verifier = await published_verifier(client)
    async with audit.db.read() as conn:
        notes = (await conn.execute(select(checkpoints.c.size, checkpoints.c.note)
                                    .order_by(checkpoints.c.size))).all()
    heads = {}
    for row in notes:  # every stored note verifies with the published vkey
        body = SignedCheckpoint.from_text(row.note, verifier).checkpoint
        assert body.size == row.size
        heads[body.size] = body.root_hash
    assert len(heads) >= 4
    for old, new in combinations(sorted(heads), 2):
        proof = await audit.consistency_proof(old, new)
        merkle.verify_consistency(old, new, heads[old], heads[new], proof)
    # The public endpoint serves the same proofs.
    old, new = min(heads), max(heads)
    resp = await client.get(f"/regulator/v1/proofs/consistency?from={old}&to={new}")
    served = [base64.b64decode(h) for h in await resp.json()]
    merkle.verify_consistency(old, new, heads[old], heads[new], served)


# --- an outside verifier: hashlib + cryptography only, from RFC 9162 and C2SP -------------


def rfc9162_root_from_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2, step by step."""
    node = lambda a, b: hashlib.sha256(b"\x01" + a + b).digest()  # noqa: E731
    if index >= size:
        raise ValueError("index out of range")
    fn, sn, r = index, size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def c2sp_open_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint: verify the Ed25519 line, return (origin, size, root)."""
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 0x01 and len(key) == 33
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + key[1:]).digest()[:4]
    assert key_id.hex() == key_id_hex
    body, sep, signatures = note.partition("\n\n")
    assert sep and body
    body_bytes = (body + "\n").encode()
    for line in signatures.splitlines():
        prefix = f"\u2014 {name} "
        raw = base64.b64decode(line[len(prefix):]) if line.startswith(prefix) else b""
        if raw[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], body_bytes)
            origin, size, root = body.split("\n")[:3]
            return origin, int(size), base64.b64decode(root)
    raise InvalidSignature("no signature by the log key")


async def test_outside_verifier_accepts_what_the_service_serves(
    client: Client, clock: FakeClock
) -> None:
    tenants = await populate(client, clock)
    ops = await ops_token(client)
    regulator = Ed25519PrivateKey.generate()
    raw = regulator.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    resp = await client.post("/ops/v1/regulator-keys", headers=bearer(ops), json={
        "keyid": "outside-1", "public_key": base64.b64encode(raw).decode(), "label": "t"})
    assert resp.status == 201, await resp.text()
    await client.app[appkeys.SEQUENCER].drain()

    vkey = (await (await client.get("/regulator/v1/keys")).json())["log"]["vkey"]
    body = json.dumps({
        "request_id": {"country": "PK", "authority": "PTA", "number": "2026-000999"},
        "authorisation": {"reference": "PTA/LI/2026/0099", "legal_basis": "PECA 2016 s.32",
                          "valid_from": "2026-11-01T00:00:00Z",
                          "valid_until": "2026-12-31T00:00:00Z"},
        "query": {"kind": "activity.tenant", "tenant_id": tenants[1]["id"],
                  "from": "2026-11-29T00:00:00Z", "to": "2026-12-01T00:00:00Z"},
    }).encode()
    headers = httpsig.sign_request(
        private_key=regulator, keyid="outside-1", authority=f"{client.host}:{client.port}",
        body=body, created=int(clock.now().timestamp()), nonce=secrets.token_urlsafe(16),
        scheme="http").headers()
    resp = await client.post(httpsig.REQUEST_PATH, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()

    origin, size, root = c2sp_open_checkpoint(answer["checkpoint"], vkey)
    assert origin == vkey.split("+")[0] and size > 0
    records = answer["records"]
    # tenant.created, tenant.verified, token.issued and two peer.provisioned at least
    assert len(records) >= 5
    for record in records:
        leaf = base64.b64decode(record["leaf"])
        assert json.loads(leaf) == record["event"]
        assert record["event"]["tenant_id"] == tenants[1]["id"]
        proof = [base64.b64decode(h) for h in record["inclusion_proof"]]
        assert rfc9162_root_from_inclusion(leaf, record["index"], size, proof) == root
        # a changed leaf is refused
        assert rfc9162_root_from_inclusion(leaf + b" ", record["index"], size, proof) != root

    # The plain checkpoint endpoint too, and a forged note is refused.
    note = await (await client.get("/regulator/v1/checkpoint")).text()
    assert c2sp_open_checkpoint(note, vkey)[1] >= size
    forged = note.replace(f"\n{c2sp_open_checkpoint(note, vkey)[1]}\n", "\n1\n", 1)
    with pytest.raises(InvalidSignature):
        c2sp_open_checkpoint(forged, vkey)
