"""Property checks of cosignature/v1: any changed byte of a cosigned note breaks it."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.cosignature import Cosigner, open_witnessed_checkpoint
from gateway.audit.note import Checkpoint, Ed25519NoteSigner, NoteError

LOG = Ed25519NoteSigner("vpngw.example/log", Ed25519PrivateKey.from_private_bytes(bytes(32)))
WITNESS = Cosigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def _note(size: int, root: bytes, timestamp: int) -> bytes:
    body = Checkpoint("vpngw.example/log", size, root).to_body()
    return (LOG.sign(body) + WITNESS.signature_line(body, timestamp)).encode()


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 2**64 - 1), root=st.binary(min_size=32, max_size=32),
       timestamp=st.integers(0, 2**63 - 1))
def test_round_trip(size: int, root: bytes, timestamp: int) -> None:
    opened = open_witnessed_checkpoint(_note(size, root, timestamp), LOG.verifier,
                                       [WITNESS.verifier])
    assert [c.timestamp for c in opened.cosignatures] == [timestamp]
    assert opened.signed.checkpoint.size == size


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_loses_the_cosignature_or_fails(data: st.DataObject) -> None:
    note = _note(12345, bytes(range(32)), 1700000000)
    position = data.draw(st.integers(0, len(note) - 1))
    bit = data.draw(st.integers(0, 7))
    tampered = bytearray(note)
    tampered[position] ^= 1 << bit
    try:
        opened = open_witnessed_checkpoint(bytes(tampered), LOG.verifier, [WITNESS.verifier])
    except NoteError:
        return  # malformed, or the log's signature no longer verifies
    # The note still opened: the flip hit the witness line, which must no longer count.
    assert opened.cosignatures == ()
