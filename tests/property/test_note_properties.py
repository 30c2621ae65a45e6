"""Property-based checks of gateway.audit.note: round trips and tamper detection."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.note import (
    Checkpoint,
    Ed25519NoteSigner,
    Ed25519NoteVerifier,
    NoteError,
    SignedCheckpoint,
    decode_private_key,
    encode_private_key,
    open_note,
    parse_vkey,
)

# Fixed seeds keep the tests reproducible; the key material is not secret.
SIGNER = Ed25519NoteSigner(
    "example.com/vpngw-log", Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
)
WITNESS = Ed25519NoteSigner(
    "example.com/witness", Ed25519PrivateKey.from_private_bytes(bytes(range(32, 64)))
)

# Key names: printable, no Unicode spaces, no '+'.
key_names = st.text(
    alphabet=st.characters(
        min_codepoint=0x21,
        exclude_categories=("Cs", "Zs", "Zl", "Zp", "Cc"),
        exclude_characters="+",
    ),
    min_size=1,
    max_size=30,
).filter(lambda s: not any(ch.isspace() for ch in s))

# One body line: any text without control characters (U+2014 and non-ASCII included).
line_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, exclude_categories=["Cs"]),
    max_size=40,
)
bodies = st.lists(line_text, min_size=1, max_size=6).map(
    lambda lines: "".join(line + "\n" for line in lines).encode("utf-8")
)
nonempty_line = line_text.filter(bool)


@settings(max_examples=60, deadline=None)
@given(key_names, st.binary(min_size=32, max_size=32))
def test_vkey_and_private_key_round_trip(name: str, seed: bytes) -> None:
    key = Ed25519PrivateKey.from_private_bytes(seed)
    signer = Ed25519NoteSigner(name, key)
    verifier = parse_vkey(signer.vkey())
    assert verifier == signer.verifier
    assert verifier.vkey() == signer.vkey()
    assert Ed25519NoteVerifier.from_vkey(signer.vkey()).key_id == signer.key_id
    # Key ID formula, independently recomputed.
    expected = hashlib.sha256(name.encode() + b"\n\x01" + verifier.public_key).digest()[:4]
    assert signer.key_id == expected
    assert signer.vkey().split("+")[1] == expected.hex()
    decoded_name, decoded = decode_private_key(encode_private_key(name, key))
    assert decoded_name == name
    assert Ed25519NoteSigner(decoded_name, decoded).vkey() == signer.vkey()


@settings(max_examples=60, deadline=None)
@given(bodies)
def test_sign_open_round_trip(body: bytes) -> None:
    text = SIGNER.sign(body)
    note = open_note(text, [SIGNER.verifier])
    assert note.body == body
    assert [s.label for s in note.signatures] == [f"{SIGNER.name}+{SIGNER.key_id.hex()}"]
    assert open_note(text.encode(), [SIGNER.verifier, WITNESS.verifier]).body == body
    # An extra signature from an unknown key is ignored, not fatal.
    cosigned = text + WITNESS.signature_line(body)
    note = open_note(cosigned, [SIGNER.verifier])
    assert note.body == body
    assert [s.name for s in note.unverified] == [WITNESS.name]


def _assert_every_byte_flip_fails(text: str) -> None:
    raw = text.encode("utf-8")
    for pos in range(len(raw)):
        for mask in (0x01, 0x20, 0x80):
            tampered = raw[:pos] + bytes([raw[pos] ^ mask]) + raw[pos + 1 :]
            with pytest.raises(NoteError):
                open_note(tampered, [SIGNER.verifier])


def test_every_byte_flip_of_a_signed_note_fails() -> None:
    body = "example.com/vpngw-log\n42\nqW+3Zbl0bq2hZ2dY8JMpzW3OL5LP26G6jAmtE7+2kxM=\nü — ext\n"
    _assert_every_byte_flip_fails(SIGNER.sign(body.encode()))


@settings(max_examples=15, deadline=None)
@given(bodies)
def test_random_body_byte_flips_fail(body: bytes) -> None:
    _assert_every_byte_flip_fails(SIGNER.sign(body))


@settings(max_examples=200, deadline=None)
@given(bodies, st.data())
def test_tampered_signature_bytes_fail(body: bytes, data: st.DataObject) -> None:
    text = SIGNER.sign(body)
    prefix, b64 = text[:-1].rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    raw[pos] ^= data.draw(st.integers(1, 255), label="mask")
    tampered = f"{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(NoteError):
        open_note(tampered, [SIGNER.verifier])


@settings(max_examples=100, deadline=None)
@given(
    nonempty_line,
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(nonempty_line, max_size=3).map(tuple),
)
def test_checkpoint_round_trip(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin, size, root, extensions)
    body = cp.to_body()
    assert Checkpoint.from_body(body) == cp
    assert body.count(b"\n") == 3 + len(extensions)
    signed = SignedCheckpoint.from_text(cp.sign(SIGNER), SIGNER.verifier, origin=origin)
    assert signed.checkpoint == cp
