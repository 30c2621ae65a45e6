"""The witness's add-checkpoint state machine (C2SP tlog-witness) over its durable store."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.cosignature import Cosigner, open_witnessed_checkpoint
from gateway.audit.merkle import MemoryTree
from gateway.audit.note import Checkpoint, Ed25519NoteSigner
from gateway.witness.protocol import (
    ProtocolError,
    parse_add_checkpoint,
    render_add_checkpoint,
)
from gateway.witness.server import Witness
from gateway.witness.store import WitnessStore

ORIGIN = "vpngw.example/log"
LOG = Ed25519NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(32)))
OTHER_LOG = Ed25519NoteSigner("other.example/log",
                              Ed25519PrivateKey.from_private_bytes(bytes([1] * 32)))
IMPOSTOR = Ed25519NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes([2] * 32)))
COSIGNER = Cosigner("witness.example/w1", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


class Log:
    """A log in memory: leaves, tree, signed checkpoints."""

    def __init__(self, prefix: bytes = b"entry", signer: Ed25519NoteSigner = LOG) -> None:
        self.tree = MemoryTree()
        self.prefix = prefix
        self.signer = signer

    def grow(self, n: int) -> None:
        for _ in range(n):
            self.tree.append(self.prefix + str(self.tree.size).encode())

    def checkpoint(self, size: int | None = None) -> str:
        size = self.tree.size if size is None else size
        return Checkpoint(self.signer.name, size, self.tree.root(size)).sign(self.signer)

    def request(self, old: int, size: int | None = None) -> bytes:
        size = self.tree.size if size is None else size
        proof = self.tree.consistency_proof(old, size) if 0 < old < size else []
        return render_add_checkpoint(old, proof, self.checkpoint(size))


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    return Witness(cosigner=COSIGNER, logs={ORIGIN: LOG.verifier},
                   store=WitnessStore(tmp_path), clock=lambda: 1700000000.0)


async def test_first_checkpoint_is_cosigned_and_the_line_verifies(witness: Witness) -> None:
    log = Log()
    log.grow(5)
    decision, line = await witness.add_checkpoint(log.request(0))
    assert decision.status == 200, decision.detail
    opened = open_witnessed_checkpoint(log.checkpoint() + line, LOG.verifier,
                                       [COSIGNER.verifier])
    assert [c.timestamp for c in opened.cosignatures] == [1700000000]


async def test_growth_with_a_valid_proof_is_cosigned(witness: Witness) -> None:
    log = Log()
    log.grow(5)
    assert (await witness.add_checkpoint(log.request(0)))[0].status == 200
    log.grow(17)
    decision, _ = await witness.add_checkpoint(log.request(5))
    assert decision.status == 200, decision.detail
    assert (await witness.store.latest())[ORIGIN].size == 22


async def test_a_stale_old_size_gets_409_with_the_size_held(witness: Witness) -> None:
    log = Log()
    log.grow(8)
    await witness.add_checkpoint(log.request(0))
    log.grow(2)
    decision, line = await witness.add_checkpoint(log.request(3))
    assert (decision.status, decision.current_size, line) == (409, 8, "")


async def test_a_bad_consistency_proof_gets_422_and_changes_nothing(witness: Witness) -> None:
    log = Log()
    log.grow(6)
    await witness.add_checkpoint(log.request(0))
    log.grow(3)
    proof = log.tree.consistency_proof(6, 9)
    proof[0] = bytes(32)
    decision, _ = await witness.add_checkpoint(render_add_checkpoint(6, proof, log.checkpoint()))
    assert decision.status == 422
    assert (await witness.store.latest())[ORIGIN].size == 6


async def test_a_fork_is_refused(witness: Witness) -> None:
    honest, fork = Log(b"honest"), Log(b"forked")
    honest.grow(4)
    fork.grow(9)
    assert (await witness.add_checkpoint(honest.request(0)))[0].status == 200
    # Same size, other root: 409 without a size to retry from.
    fork_same = render_add_checkpoint(4, [], Checkpoint(
        ORIGIN, 4, fork.tree.root(4)).sign(LOG))
    decision, _ = await witness.add_checkpoint(fork_same)
    assert (decision.status, decision.current_size) == (409, None)
    # Larger, with the fork's own (valid for the fork) proof: it does not reach our root.
    decision, _ = await witness.add_checkpoint(fork.request(4))
    assert decision.status == 422
    assert (await witness.store.latest())[ORIGIN].root == honest.tree.root()


async def test_unknown_origin_404_bad_signature_403_old_beyond_size_400(
    witness: Witness,
) -> None:
    other = Log(signer=OTHER_LOG)
    other.grow(2)
    assert (await witness.add_checkpoint(other.request(0)))[0].status == 404
    impostor = Log(signer=IMPOSTOR)
    impostor.grow(2)
    assert (await witness.add_checkpoint(impostor.request(0)))[0].status == 403
    log = Log()
    log.grow(2)
    body = render_add_checkpoint(3, [], log.checkpoint())
    assert (await witness.add_checkpoint(body))[0].status == 400


async def test_a_proof_from_size_zero_must_be_empty(witness: Witness) -> None:
    log = Log()
    log.grow(4)
    body = render_add_checkpoint(0, [bytes(32)], log.checkpoint())
    assert (await witness.add_checkpoint(body))[0].status == 422


async def test_the_state_survives_a_new_witness_on_the_same_directory(tmp_path: Path) -> None:
    log = Log()
    log.grow(10)
    first = Witness(cosigner=COSIGNER, logs={ORIGIN: LOG.verifier}, store=WitnessStore(tmp_path))
    assert (await first.add_checkpoint(log.request(0)))[0].status == 200
    again = Witness(cosigner=COSIGNER, logs={ORIGIN: LOG.verifier}, store=WitnessStore(tmp_path))
    decision, _ = await again.add_checkpoint(log.request(0))
    assert (decision.status, decision.current_size) == (409, 10)


async def test_equal_size_and_root_is_cosigned_again(witness: Witness) -> None:
    log = Log()
    log.grow(3)
    await witness.add_checkpoint(log.request(0))
    assert (await witness.add_checkpoint(log.request(3)))[0].status == 200


@pytest.mark.parametrize("body, reason", [
    (b"old 01\n\n", "no leading zeros"),
    (b"old 1\nnot-a-hash\n\n", "line 2"),
    (b"old 1\n", "empty line"),
    (("old 1\n" + ("A" * 43 + "=\n") * 64 + "\n").encode(), "63"),
    (b"\xff\n\n", "UTF-8"),
])
def test_malformed_bodies_are_400_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_add_checkpoint(body)


def test_render_and_parse_agree() -> None:
    log = Log()
    log.grow(11)
    parsed = parse_add_checkpoint(log.request(4))
    assert parsed.old_size == 4
    assert list(parsed.proof) == log.tree.consistency_proof(4, 11)
    assert parsed.checkpoint == log.checkpoint()
    assert base64.b64encode(parsed.proof[0]).decode() in log.request(4).decode()
