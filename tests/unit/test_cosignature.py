"""cosignature/v1 (C2SP tlog-cosignature, Ed25519): key ids, vkeys, the signed message."""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from gateway.audit.cosignature import (
    CosignatureError,
    Cosigner,
    CosignerVerifier,
    check_quorum,
    cosigned_message,
    open_witnessed_checkpoint,
    parse_signature_lines,
    verify_cosignatures,
)
from gateway.audit.note import Checkpoint, Ed25519NoteSigner, UnverifiedNoteError

# A native cosignature/v1 vkey published in transparency-dev/formats' tests: its key id
# must be SHA-256(name || 0x0A || 0x04 || key)[:4].
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
# The note key from golang.org/x/mod/sumdb/note's tests: a Go-made key file works as a
# witness key (the same seed, signature type 0x04 for cosignatures).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"

LOG = Ed25519NoteSigner("vpngw.example/log", Ed25519PrivateKey.from_private_bytes(bytes(32)))
W1 = Cosigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
W2 = Cosigner("witness.example/w2", Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))))
BODY = Checkpoint("vpngw.example/log", 20852163, bytes(range(32))).to_body()


def test_key_id_is_the_c2sp_one_for_a_published_vkey() -> None:
    verifier = CosignerVerifier.from_vkey(REMORA_VKEY)
    assert verifier.key_id.hex() == "da77ade7"
    assert verifier.vkey() == REMORA_VKEY


def test_key_id_commits_to_signature_type_4() -> None:
    raw = W1.verifier.public_key
    expected = hashlib.sha256(b"witness.example/w1\n\x04" + raw).digest()[:4]
    assert W1.verifier.key_id == expected
    assert W1.verifier.vkey() == (
        f"witness.example/w1+{expected.hex()}+" + base64.b64encode(b"\x04" + raw).decode())


def test_a_go_note_key_file_is_a_witness_key() -> None:
    cosigner = Cosigner.from_private_key(PETER_SKEY)
    assert cosigner.name == "PeterNeumann"
    # Same public key as the log-style vkey, but type 0x04 and so another key id.
    assert cosigner.verifier.vkey().startswith("PeterNeumann+")
    assert cosigner.verifier.key_id.hex() != "c74f20a3"


@pytest.mark.parametrize("vkey, reason", [
    ("vpngw.example/log+00000000+" + base64.b64encode(b"\x01" + bytes(32)).decode(),
     "type 0x04"),
    ("w+00000000+" + base64.b64encode(b"\x04" + bytes(range(32))).decode(), "does not match"),
    ("w+12345678", "form"),
    ("w+12345678+not base64!", "base64"),
])
def test_bad_vkeys_are_refused_with_the_reason(vkey: str, reason: str) -> None:
    with pytest.raises(CosignatureError, match=reason):
        CosignerVerifier.from_vkey(vkey)


def test_the_line_is_key_id_timestamp_and_a_signature_over_the_spec_message() -> None:
    line = W1.signature_line(BODY, 1679315147)
    assert line.startswith("— witness.example/w1 ") and line.endswith("\n")
    payload = base64.b64decode(line.split(" ")[2])
    assert len(payload) == 4 + 8 + 64
    assert payload[:4] == W1.verifier.key_id
    assert struct.unpack(">Q", payload[4:12]) == (1679315147,)
    # The spec's message, built here by hand: header, time line, the whole body.
    message = b"cosignature/v1\ntime 1679315147\n" + BODY
    assert cosigned_message(BODY, 1679315147) == message
    Ed25519PublicKey.from_public_bytes(W1.verifier.public_key).verify(payload[12:], message)


def test_round_trip_through_a_note() -> None:
    note = LOG.sign(BODY) + W1.signature_line(BODY, 1700000000) + W2.signature_line(BODY, 5)
    opened = open_witnessed_checkpoint(note, LOG.verifier, [W1.verifier, W2.verifier])
    assert {(c.name, c.timestamp) for c in opened.cosignatures} == {
        ("witness.example/w1", 1700000000), ("witness.example/w2", 5)}
    assert opened.problems == ()
    assert check_quorum(opened, [W1.verifier, W2.verifier], 2) is None


def test_a_cosignature_is_not_a_log_signature_and_proves_nothing_alone() -> None:
    note = BODY.decode() + "\n" + W1.signature_line(BODY, 1)
    with pytest.raises(UnverifiedNoteError):
        open_witnessed_checkpoint(note, LOG.verifier, [W1.verifier])


def test_a_timestamp_changed_after_signing_fails() -> None:
    line = W1.signature_line(BODY, 1000)
    payload = bytearray(base64.b64decode(line.split(" ")[2]))
    payload[11] ^= 1
    forged = f"— witness.example/w1 {base64.b64encode(bytes(payload)).decode()}\n"
    verified, problems = verify_cosignatures(BODY, parse_signature_lines(forged), [W1.verifier])
    assert verified == [] and problems == ["cosignature by " + W1.verifier.label
                                           + " does not verify"]


def test_unknown_witness_lines_are_ignored_and_quorum_names_who_is_missing() -> None:
    stranger = Cosigner("stranger.example", Ed25519PrivateKey.from_private_bytes(bytes([7] * 32)))
    note = LOG.sign(BODY) + stranger.signature_line(BODY, 9) + W1.signature_line(BODY, 9)
    opened = open_witnessed_checkpoint(note, LOG.verifier, [W1.verifier, W2.verifier])
    assert [c.name for c in opened.cosignatures] == ["witness.example/w1"]
    missing = check_quorum(opened, [W1.verifier, W2.verifier], 2)
    assert missing is not None
    assert "1 of the required 2" in missing and W2.verifier.label in missing


def test_a_cosignature_of_another_checkpoint_does_not_count() -> None:
    other = Checkpoint("vpngw.example/log", 20852164, bytes(range(32))).to_body()
    note = LOG.sign(BODY) + W1.signature_line(other, 9)
    opened = open_witnessed_checkpoint(note, LOG.verifier, [W1.verifier])
    assert opened.cosignatures == ()
    assert opened.problems == (f"cosignature by {W1.verifier.label} does not verify",)


def test_timestamps_beyond_2_63_are_refused() -> None:
    with pytest.raises(CosignatureError, match="2\\*\\*63"):
        W1.signature_line(BODY, 2**63)


@pytest.mark.parametrize("raw", [bytes([1]) + bytes(31), bytes(32)], ids=["identity", "zero"])
def test_a_small_order_witness_key_is_refused(raw: bytes) -> None:
    # Under such a key the signature R = identity, S = 0 "cosigns" without any private key.
    with pytest.raises(CosignatureError, match="small order"):
        CosignerVerifier("witness.example/forged", raw)
    forged = struct.pack(">Q", 1000) + bytes([1]) + bytes(63)
    assert W1.verifier.verify(BODY, forged) is None
