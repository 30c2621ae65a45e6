"""The C2SP tlog-witness add-checkpoint exchange, decided without I/O.

:func:`parse_add_checkpoint` reads a request body; :func:`decide` applies the spec's
checks, in its order, against the last checkpoint this witness cosigned for the origin
and says what to answer and what to store.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.audit import merkle
from gateway.audit.note import Checkpoint, Ed25519NoteVerifier, NoteError, SignedCheckpoint

__all__ = [
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "Decision",
    "Latest",
    "ProtocolError",
    "decide",
    "parse_add_checkpoint",
    "render_add_checkpoint",
]

MAX_PROOF_LINES = 63
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_OLD_RE = re.compile(r"old (0|[1-9][0-9]*)")


class ProtocolError(ValueError):
    """The request body is not an add-checkpoint body (answered 400)."""


@dataclass(frozen=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True)
class Latest:
    """The last checkpoint a witness cosigned for one origin."""

    size: int
    root: bytes
    note: str


@dataclass(frozen=True)
class Decision:
    """What to answer; ``store`` is the new latest checkpoint when the answer is 200."""

    status: int
    detail: str
    store: Latest | None = None
    checkpoint: Checkpoint | None = None
    current_size: int | None = None  # for 409: the size the witness holds


def render_add_checkpoint(old_size: int, proof: list[bytes], checkpoint: str) -> bytes:
    """A client's request body: old size line, proof lines, blank line, signed checkpoint."""
    lines = [f"old {old_size}"] + [base64.b64encode(h).decode() for h in proof]
    return ("\n".join(lines) + "\n\n" + checkpoint).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"body is not UTF-8 (byte {exc.start})") from None
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise ProtocolError("body needs an empty line between the proof and the checkpoint")
    lines = head.split("\n")
    match = _OLD_RE.fullmatch(lines[0])
    if match is None:
        raise ProtocolError("the first line must be 'old <size>' (decimal, no leading zeros)")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise ProtocolError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            raw = base64.b64decode(line, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != merkle.HASH_SIZE:
            raise ProtocolError(f"line {number} is not a base64 SHA-256 hash")
        proof.append(raw)
    return AddCheckpoint(int(match.group(1)), tuple(proof), checkpoint)


def decide(
    request: AddCheckpoint,
    logs: Mapping[str, Ed25519NoteVerifier],
    latest: Mapping[str, Latest],
) -> Decision:
    """Apply tlog-witness's checks; ``logs`` maps origin to the trusted log key."""
    try:
        origin = Checkpoint.from_body(request.checkpoint.rpartition("\n\n")[0].encode()
                                      + b"\n").origin
    except NoteError as exc:
        return Decision(400, f"the checkpoint cannot be read: {exc}")
    log = logs.get(origin)
    if log is None:
        return Decision(404, f"unknown log origin {origin!r}")
    try:
        signed = SignedCheckpoint.from_text(request.checkpoint, log)
    except NoteError as exc:
        return Decision(403, f"no valid signature by the log's key {log.vkey()}: {exc}")
    cp = signed.checkpoint
    if request.old_size > cp.size:
        return Decision(400, f"old size {request.old_size} is larger than the checkpoint size "
                             f"{cp.size}")
    held = latest.get(origin)
    held_size = held.size if held is not None else 0
    if request.old_size != held_size:
        return Decision(409, f"old size {request.old_size} is not the size {held_size} this "
                             "witness last cosigned", current_size=held_size)
    if held is None or held_size == 0:
        if request.proof:
            return Decision(422, "the consistency proof must be empty from size 0")
    elif held_size == cp.size:
        if request.proof:
            return Decision(422, "the consistency proof must be empty between equal sizes")
        if held.root != cp.root_hash:
            return Decision(409, f"the log forked: size {cp.size} has another root than the one "
                                 "this witness cosigned")
    else:
        try:
            merkle.verify_consistency(held_size, cp.size, held.root, cp.root_hash,
                                      list(request.proof))
        except merkle.MerkleError as exc:
            return Decision(422, f"consistency proof from {held_size} to {cp.size} does not "
                                 f"verify: {exc}")
    return Decision(200, f"cosigned size {cp.size}",
                    store=Latest(cp.size, cp.root_hash, request.checkpoint), checkpoint=cp)
