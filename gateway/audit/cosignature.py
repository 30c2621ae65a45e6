"""C2SP tlog-cosignature ``cosignature/v1`` with Ed25519: witness signatures on checkpoints.

A cosignature is a signed-note signature line ``— <name> base64(key id || timestamp ||
signature)`` where the key id is SHA-256(name || 0x0A || 0x04 || public key)[:4], the
timestamp a big-endian u64 of POSIX seconds, and the Ed25519 signature covers
``cosignature/v1\\ntime <timestamp>\\n`` followed by the whole checkpoint body.
Pure: bytes in, values or exceptions out.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.audit.note import Ed25519NoteVerifier as LogVerifier
from gateway.audit.note import (
    KeyFormatError,
    MalformedNoteError,
    NoteError,
    NoteSignature,
    SignedCheckpoint,
    decode_private_key,
    open_note,
)
from gateway.crypto import ed25519_checks

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureError",
    "Cosigner",
    "CosignerVerifier",
    "VerifiedCosignature",
    "WitnessedCheckpoint",
    "check_quorum",
    "cosigned_message",
    "cosigner_key_id",
    "open_witnessed_checkpoint",
    "parse_signature_lines",
    "signature_line",
    "verify_cosignatures",
]

ALG_COSIGNATURE_V1 = 0x04
_HEADER = b"cosignature/v1\n"
_KEY_ID_SIZE = 4
_PAYLOAD_SIZE = _KEY_ID_SIZE + 8 + 64
_MAX_TIMESTAMP = 2**63 - 1
_SIG_PREFIX = "— "


class CosignatureError(NoteError):
    """A cosigner key, cosignature line or quorum requirement is not met; the message says which."""

    code = "cosignature-error"
    title = "Cosignature refused"


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() or c < " " for c in name)


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x04 || 32-byte Ed25519 public key)[:4]."""
    if not _valid_name(name):
        raise CosignatureError(f"invalid cosigner name {name!r}: non-empty, no spaces or '+'")
    if len(public_key) != 32:
        raise CosignatureError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return hashlib.sha256(name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1])
                          + public_key).digest()[:_KEY_ID_SIZE]


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """What a cosigner signs: header line, timestamp line, then the checkpoint body."""
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp {timestamp} is outside 0..2**63-1")
    return _HEADER + f"time {timestamp}\n".encode() + body


@dataclass(frozen=True)
class VerifiedCosignature:
    """A cosignature that verified: who made it and when (POSIX seconds)."""

    name: str
    key_id: bytes
    timestamp: int
    line: str

    @property
    def label(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"


@dataclass(frozen=True)
class CosignerVerifier:
    """A trusted witness: name and raw Ed25519 public key (vkey type 0x04)."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", cosigner_key_id(self.name, self.public_key))
        try:
            key = ed25519_checks.load_public_key(self.public_key)
        except ValueError as exc:
            raise CosignatureError(f"invalid Ed25519 public key: {exc}") from None
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignerVerifier:
        """Parse ``<name>+<8 hex key id>+<base64(0x04 || public key)>``; the id must match."""
        parts = vkey.strip().split("+", 2)
        if len(parts) != 3:
            raise CosignatureError(
                "witness vkey must have the form <name>+<8 hex digits>+<base64 key>")
        name, hex_id, b64 = parts
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            raw = b""
        if not raw or base64.b64encode(raw).decode() != b64:
            raise CosignatureError("witness vkey key material is not canonical standard base64")
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise CosignatureError(
                "witness vkey must be of signature type 0x04 (cosignature/v1) followed by a "
                f"32-byte Ed25519 key; got type 0x{raw[0]:02x} and {len(raw) - 1} key bytes")
        verifier = cls(name, raw[1:])
        if len(hex_id) != 8 or verifier.key_id.hex() != hex_id.lower():
            raise CosignatureError(
                f"witness vkey key id {hex_id!r} does not match its name and key "
                f"(expected {verifier.key_id.hex()}); the vkey is corrupted")
        return verifier

    def vkey(self) -> str:
        material = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @property
    def label(self) -> str:
        return f"{self.name}+{self.key_id.hex()}"

    def verify(self, body: bytes, payload: bytes) -> int | None:
        """The timestamp if ``payload`` (timestamp || signature) cosigns ``body``, else None."""
        if len(payload) != _PAYLOAD_SIZE - _KEY_ID_SIZE:
            return None
        (timestamp,) = struct.unpack(">Q", payload[:8])
        if timestamp > _MAX_TIMESTAMP:
            return None
        try:
            ed25519_checks.verify(self._key, payload[8:], cosigned_message(body, timestamp))
        except (InvalidSignature, ValueError):  # incl. small-order keys and R, S >= L
            return None
        return int(timestamp)


class Cosigner:
    """A witness's signing key under its name."""

    __slots__ = ("_key", "verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = CosignerVerifier(name, raw)

    @classmethod
    def from_private_key(cls, text: str) -> Cosigner:
        """From a signed-note private key (``PRIVATE+KEY+<name>+<id>+<base64>``), as
        golang.org/x/mod/sumdb/note writes them; the same seed signs cosignatures."""
        try:
            name, key = decode_private_key(text)
        except KeyFormatError as exc:
            raise CosignatureError(f"witness key: {exc}") from exc
        return cls(name, key)

    @property
    def name(self) -> str:
        return self.verifier.name

    def __repr__(self) -> str:
        return f"Cosigner({self.verifier.vkey()!r})"

    def signature_line(self, body: bytes, timestamp: int) -> str:
        """``— <name> base64(key id || timestamp || signature)\\n`` over ``body``."""
        signature = self._key.sign(cosigned_message(body, timestamp))
        payload = self.verifier.key_id + struct.pack(">Q", timestamp) + signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(payload).decode()}\n"


def parse_signature_lines(text: str) -> list[NoteSignature]:
    """Parse a block of signature lines (a witness's 200 answer) into note signatures."""
    if not text.endswith("\n"):
        raise MalformedNoteError("signature lines must each end with a newline")
    found = []
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNoteError(f"line {number} is not a signature line (— name base64)")
        name, sep, b64 = line[len(_SIG_PREFIX):].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except ValueError:
            raw = b""
        if not sep or not _valid_name(name) or len(raw) <= _KEY_ID_SIZE:
            raise MalformedNoteError(f"line {number} is not a signature line (— name base64)")
        found.append(NoteSignature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]))
    return found


def signature_line(sig: NoteSignature) -> str:
    return f"{_SIG_PREFIX}{sig.name} {base64.b64encode(sig.key_id + sig.signature).decode()}\n"


def verify_cosignatures(
    body: bytes, signatures: Iterable[NoteSignature], witnesses: Sequence[CosignerVerifier]
) -> tuple[list[VerifiedCosignature], list[str]]:
    """Verified cosignatures by trusted witnesses, and problems with lines that claim one.

    Lines from unknown keys are ignored, as the spec requires; a line with a trusted
    name and key id whose signature fails is reported (it never counts).
    """
    known = {(w.name, w.key_id): w for w in witnesses}
    verified: dict[bytes, VerifiedCosignature] = {}
    problems: list[str] = []
    for sig in signatures:
        witness = known.get((sig.name, sig.key_id))
        if witness is None:
            continue
        timestamp = witness.verify(body, sig.signature)
        if timestamp is None:
            problems.append(f"cosignature by {witness.label} does not verify")
        elif witness.key_id not in verified:
            verified[witness.key_id] = VerifiedCosignature(
                witness.name, witness.key_id, timestamp, signature_line(sig))
    return list(verified.values()), problems


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A checkpoint verified with the log key, and the trusted cosignatures it carries."""

    signed: SignedCheckpoint
    cosignatures: tuple[VerifiedCosignature, ...]
    problems: tuple[str, ...]

    def missing(self, witnesses: Sequence[CosignerVerifier]) -> list[str]:
        have = {c.key_id for c in self.cosignatures}
        return [w.label for w in witnesses if w.key_id not in have]


def open_witnessed_checkpoint(
    text: str | bytes, log: LogVerifier, witnesses: Sequence[CosignerVerifier]
) -> WitnessedCheckpoint:
    """Open a checkpoint with the log key, then verify the trusted witnesses' cosignatures."""
    signed = SignedCheckpoint.from_text(text, log)
    note = open_note(text, [log])
    verified, problems = verify_cosignatures(note.body, note.unverified, witnesses)
    return WitnessedCheckpoint(signed, tuple(verified), tuple(problems))


def check_quorum(
    witnessed: WitnessedCheckpoint, witnesses: Sequence[CosignerVerifier], quorum: int
) -> str | None:
    """None when at least ``quorum`` trusted witnesses cosigned; else what is missing."""
    if quorum < 0:
        raise CosignatureError("quorum must be >= 0")
    if quorum > len(witnesses):
        return (f"quorum {quorum} is more than the {len(witnesses)} witness key(s) given; "
                "add --witness VKEY or lower --quorum")
    have = len(witnesses) - len(witnessed.missing(witnesses))
    if have >= quorum:
        return None
    parts = [f"{have} of the required {quorum} witness cosignature(s)",
             "missing: " + ", ".join(witnessed.missing(witnesses))]
    parts += list(witnessed.problems)
    return "; ".join(parts)
