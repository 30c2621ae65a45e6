"""C2SP signed notes with Ed25519 keys, and C2SP tlog-checkpoint bodies."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from gateway.crypto import ed25519_checks
from provisioning.errors import DomainError

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointError",
    "Ed25519NoteSigner",
    "Ed25519NoteVerifier",
    "InvalidSignatureError",
    "KeyFormatError",
    "MalformedNoteError",
    "Note",
    "NoteError",
    "NoteSignature",
    "SignedCheckpoint",
    "UnverifiedNoteError",
    "decode_private_key",
    "encode_private_key",
    "generate_signer_key",
    "key_id",
    "open_note",
    "parse_vkey",
    "sign_note",
]

ALG_ED25519 = 0x01
# The signed-note spec requires accepting at least 16 signatures and tells
# verifiers to bound the work; 100 matches golang.org/x/mod/sumdb/note.
MAX_SIGNATURES = 100

_SIG_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE
_KEY_ID_SIZE = 4
_ED25519_KEY_SIZE = 32
_HASH_SIZE = 32
_MAX_TREE_SIZE = 2**64 - 1
_HEX8_RE = re.compile(r"[0-9a-fA-F]{8}")
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


class NoteError(DomainError):
    """Base class for signed-note, key and checkpoint errors."""

    status = 500
    code = "note-error"
    title = "Signed note refused"


class MalformedNoteError(NoteError):
    """The note text does not follow the C2SP signed-note format."""


class UnverifiedNoteError(NoteError):
    """No signature from a trusted key is present; the note must not be trusted."""


class InvalidSignatureError(NoteError):
    """A signature by a trusted key (matching name and key ID) failed to verify."""


class KeyFormatError(NoteError):
    """A verifier (vkey) or private key string is malformed or inconsistent."""


class CheckpointError(NoteError):
    """A checkpoint body does not follow the C2SP tlog-checkpoint format."""


def _is_valid_key_name(name: str) -> bool:
    # Spec: non-empty, no Unicode spaces, no '+'. Control characters are banned
    # from notes anyway, so reject them here too for a clearer error.
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() or ch < " " for ch in name)
        and _is_utf8(name)
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _b64decode_strict(text: str) -> bytes | None:
    """Standard base64 with padding, in its unique canonical form, or None."""
    if not text or not text.isascii():
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    # Re-encoding rejects non-zero trailing bits, which would otherwise make the
    # same signature line writable in several ways.
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP Ed25519 key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    if not _is_valid_key_name(name):
        raise KeyFormatError(f"invalid key name {name!r}: must be non-empty, without spaces or '+'")
    if len(public_key) != _ED25519_KEY_SIZE:
        raise KeyFormatError(
            f"Ed25519 public key must be {_ED25519_KEY_SIZE} bytes, got {len(public_key)}"
        )
    data = name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    return hashlib.sha256(data).digest()[:_KEY_ID_SIZE]


def _raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _key_label(name: str, kid: bytes) -> str:
    return f"{name}+{kid.hex()}"


@dataclass(frozen=True)
class Ed25519NoteVerifier:
    """A trusted Ed25519 note key: name plus raw 32-byte public key."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key))
        try:
            loaded = ed25519_checks.load_public_key(self.public_key)
        except ValueError as exc:
            raise KeyFormatError(f"invalid Ed25519 public key: {exc}") from None
        object.__setattr__(self, "_key", loaded)

    @classmethod
    def from_vkey(cls, vkey: str) -> Ed25519NoteVerifier:
        """Parse a ``<name>+<hex key id>+<base64(0x01 || public key)>`` verifier key."""
        return parse_vkey(vkey)

    @classmethod
    def from_public_key(cls, name: str, key: Ed25519PublicKey) -> Ed25519NoteVerifier:
        """Build from a cryptography public key object."""
        return cls(name, _raw_public_key(key))

    def vkey(self) -> str:
        """The verifier key string to publish and configure clients with."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, body: bytes, signature: bytes) -> bool:
        """Check a raw 64-byte Ed25519 signature over the note body."""
        try:
            ed25519_checks.verify(self._key, signature, body)
        except (InvalidSignature, ValueError):
            return False
        return True


def parse_vkey(vkey: str) -> Ed25519NoteVerifier:
    """Parse a C2SP verifier key ``<name>+<8 hex digit key id>+<base64(0x01 || key)>``.

    Surrounding whitespace (e.g. a trailing newline from a config file) is ignored.
    The key ID must match the one computed from the name and key.
    """
    if not isinstance(vkey, str):
        raise KeyFormatError(f"verifier key must be a str, got {type(vkey).__name__}")
    # Only the name and the hex ID are '+'-free; base64 key material may contain '+'.
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise KeyFormatError("verifier key must have the form <name>+<8 hex digits>+<base64 key>")
    name, hex_id, b64 = parts
    if not _is_valid_key_name(name):
        raise KeyFormatError(f"verifier key has invalid key name {name!r}")
    if not _HEX8_RE.fullmatch(hex_id):
        raise KeyFormatError(f"verifier key ID {hex_id!r} is not 8 hex digits")
    raw = _b64decode_strict(b64)
    if raw is None:
        raise KeyFormatError("verifier key material is not canonical standard base64")
    if len(raw) != 1 + _ED25519_KEY_SIZE or raw[0] != ALG_ED25519:
        raise KeyFormatError(
            "verifier key material must be 0x01 followed by a 32-byte Ed25519 public key"
        )
    verifier = Ed25519NoteVerifier(name, raw[1:])
    if verifier.key_id != bytes.fromhex(hex_id):
        raise KeyFormatError(
            f"verifier key ID {hex_id} does not match name and key "
            f"(expected {verifier.key_id.hex()}); the vkey is corrupted"
        )
    return verifier


def generate_signer_key() -> Ed25519PrivateKey:
    """A fresh random Ed25519 private key for a note signer."""
    return Ed25519PrivateKey.generate()


def _seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def encode_private_key(name: str, key: Ed25519PrivateKey) -> str:
    """Encode as ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`` (no newline)."""
    kid = key_id(name, _raw_public_key(key.public_key()))
    encoded = _b64encode(bytes([ALG_ED25519]) + _seed(key))
    return f"PRIVATE+KEY+{name}+{kid.hex()}+{encoded}"


def decode_private_key(text: str) -> tuple[str, Ed25519PrivateKey]:
    """Decode the encode_private_key() form; surrounding whitespace is ignored.

    The embedded key ID must match the key derived from the seed, which catches
    truncated or mixed-up key files.
    """
    if not isinstance(text, str):
        raise KeyFormatError(f"private key must be a str, got {type(text).__name__}")
    # Only the fields before the base64 seed are '+'-free; the seed may contain '+'.
    parts = text.strip().split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise KeyFormatError(
            "private key must have the form PRIVATE+KEY+<name>+<8 hex digits>+<base64 seed>"
        )
    _, _, name, hex_id, b64 = parts
    if not _is_valid_key_name(name):
        raise KeyFormatError(f"private key has invalid key name {name!r}")
    if not _HEX8_RE.fullmatch(hex_id):
        raise KeyFormatError(f"private key ID {hex_id!r} is not 8 hex digits")
    raw = _b64decode_strict(b64)
    if raw is None or len(raw) != 1 + _ED25519_KEY_SIZE or raw[0] != ALG_ED25519:
        raise KeyFormatError(
            "private key material must be canonical base64 of 0x01 followed by a "
            "32-byte Ed25519 seed"
        )
    key = Ed25519PrivateKey.from_private_bytes(raw[1:])
    kid = key_id(name, _raw_public_key(key.public_key()))
    if kid != bytes.fromhex(hex_id):
        raise KeyFormatError(
            f"private key ID {hex_id} does not match the key (expected {kid.hex()}); "
            "the key file is corrupted"
        )
    return name, key


class Ed25519NoteSigner:
    """Signs note bodies with an Ed25519 key under a key name."""

    __slots__ = ("_key", "_verifier")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._verifier = Ed25519NoteVerifier.from_public_key(name, private_key.public_key())

    @classmethod
    def from_private_key(cls, text: str) -> Ed25519NoteSigner:
        """Build from the encode_private_key() form."""
        name, key = decode_private_key(text)
        return cls(name, key)

    def __repr__(self) -> str:
        return f"Ed25519NoteSigner({self.vkey()!r})"

    @property
    def name(self) -> str:
        """Key name that appears on signature lines."""
        return self._verifier.name

    @property
    def key_id(self) -> bytes:
        """4-byte C2SP key ID."""
        return self._verifier.key_id

    @property
    def verifier(self) -> Ed25519NoteVerifier:
        """The matching verifier."""
        return self._verifier

    def vkey(self) -> str:
        """The verifier key string for this signer."""
        return self._verifier.vkey()

    def signature_line(self, body: bytes) -> str:
        """One ``— <name> <base64(key id || signature)>\\n`` line for ``body``."""
        _check_body(body)
        return self._line(body)

    def _line(self, body: bytes) -> str:
        sig = self._key.sign(body)
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + sig)}\n"

    def sign(self, body: bytes) -> str:
        """Return the whole signed note: body, blank line, signature line."""
        return sign_note(body, [self])


def _check_text(text: str, what: str) -> None:
    # Signed notes must be UTF-8 with no ASCII control characters except newline.
    bad = _CONTROL_RE.search(text)
    if bad is not None:
        raise MalformedNoteError(f"{what} contains control character {bad.group()!r}")


def _check_body(body: bytes) -> str:
    if not isinstance(body, bytes):
        raise MalformedNoteError(f"note body must be bytes, got {type(body).__name__}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedNoteError(f"note body is not valid UTF-8 at byte {exc.start}") from None
    if not text.endswith("\n"):
        raise MalformedNoteError("note body must be non-empty and end with a newline")
    _check_text(text, "note body")
    return text


def sign_note(body: bytes, signers: Sequence[Ed25519NoteSigner]) -> str:
    """Sign ``body`` with every signer; return the note text."""
    text = _check_body(body)
    if not signers:
        raise NoteError("sign_note needs at least one signer")
    seen: set[tuple[str, bytes]] = set()
    lines: list[str] = []
    for signer in signers:
        ident = (signer.name, signer.key_id)
        if ident in seen:
            raise NoteError(f"signer {_key_label(*ident)} given twice; each key signs a note once")
        seen.add(ident)
        lines.append(signer._line(body))
    return text + "\n" + "".join(lines)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key ID and raw signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def label(self) -> str:
        """``name+hexid``, for messages."""
        return _key_label(self.name, self.key_id)


@dataclass(frozen=True)
class Note:
    """An opened note: its body and which signatures verified.

    ``signatures`` are from trusted keys and verified (at least one);
    ``unverified`` are from keys not in the verifier set, kept for callers that
    collect e.g. witness cosignatures; their bytes were NOT checked.
    """

    body: bytes
    signatures: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...] = ()

    @property
    def text(self) -> str:
        """The body as str."""
        return self.body.decode("utf-8")


def _verifier_map(
    verifiers: Iterable[Ed25519NoteVerifier],
) -> dict[tuple[str, bytes], Ed25519NoteVerifier]:
    known: dict[tuple[str, bytes], Ed25519NoteVerifier] = {}
    for v in verifiers:
        if not isinstance(v, Ed25519NoteVerifier):
            raise NoteError(f"verifiers must be Ed25519NoteVerifier, got {type(v).__name__}")
        ident = (v.name, v.key_id)
        prior = known.get(ident)
        if prior is not None and prior.public_key != v.public_key:
            raise NoteError(
                f"two different trusted keys share name and key ID {_key_label(*ident)}; "
                "fix the verifier configuration"
            )
        known[ident] = v
    return known


def open_note(text: bytes | str, verifiers: Iterable[Ed25519NoteVerifier]) -> Note:
    """Parse a signed note and verify it against trusted keys (fails closed).

    Signatures whose (name, key ID) is unknown are ignored (reported in
    ``Note.unverified``). A known key's signature that fails to verify raises
    InvalidSignatureError; no verified signature at all raises UnverifiedNoteError;
    any syntax problem raises MalformedNoteError.
    """
    known = _verifier_map(verifiers)
    if isinstance(text, str):
        if not _is_utf8(text):
            raise MalformedNoteError("note contains a lone surrogate, not valid UTF-8")
        msg = text
    elif isinstance(text, bytes | bytearray | memoryview):
        try:
            msg = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedNoteError(f"note is not valid UTF-8 at byte {exc.start}") from None
    else:
        raise MalformedNoteError(f"note must be bytes or str, got {type(text).__name__}")
    _check_text(msg, "note")

    # The text ends at the LAST blank line: the body may itself contain blank
    # lines, signature lines never do.
    split = msg.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line separating body and signatures")
    body_text, sig_block = msg[: split + 1], msg[split + 2 :]
    if not sig_block or not sig_block.endswith("\n"):
        raise MalformedNoteError("note has no signature lines, or the last one lacks a newline")
    body = body_text.encode("utf-8")

    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has more than {MAX_SIGNATURES} signatures")

    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, bytes, bytes]] = set()
    for number, line in enumerate(lines, start=1):
        sig = _parse_signature_line(line, number)
        ident = (sig.name, sig.key_id)
        verifier = known.get(ident)
        defect = None if verifier is None else ed25519_checks.signature_defect(sig.signature)
        if defect is not None:
            raise InvalidSignatureError(
                f"signature by trusted key {sig.label} is refused: Ed25519 signature {defect}"
            )
        if verifier is not None and not verifier.verify(body, sig.signature):
            raise InvalidSignatureError(
                f"signature by trusted key {sig.label} does not verify; "
                "the note was altered or signed with another key"
            )
        # Repeated identical lines carry no extra information; report each once.
        if (sig.name, sig.key_id, sig.signature) in seen:
            continue
        seen.add((sig.name, sig.key_id, sig.signature))
        (verified if verifier is not None else unverified).append(sig)

    if not verified:
        found = ", ".join(s.label for s in unverified)
        trusted = ", ".join(_key_label(*ident) for ident in known) or "none"
        raise UnverifiedNoteError(
            f"note has no signature from a trusted key (signed by: {found}; trusted: {trusted})"
        )
    return Note(body, tuple(verified), tuple(unverified))


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedNoteError(
            f"signature line {number} does not start with an em dash (U+2014) and a space"
        )
    name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not sep or not _is_valid_key_name(name):
        raise MalformedNoteError(f"signature line {number} has an invalid key name {name!r}")
    raw = _b64decode_strict(b64)
    if raw is None or len(raw) <= _KEY_ID_SIZE:
        raise MalformedNoteError(
            f"signature line {number} must end in canonical base64 of key ID || signature"
        )
    return NoteSignature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:])


def _check_line_value(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise CheckpointError(f"checkpoint {what} must be a non-empty str")
    if not _is_utf8(value):
        raise CheckpointError(f"checkpoint {what} is not valid UTF-8")
    for ch in value:
        if ch < " ":
            raise CheckpointError(f"checkpoint {what} {value!r} contains control character {ch!r}")


@dataclass(frozen=True)
class Checkpoint:
    """A C2SP tlog-checkpoint body: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line_value(self.origin, "origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise CheckpointError(f"checkpoint size must be an int, got {self.size!r}")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise CheckpointError(f"checkpoint size {self.size} is outside 0..2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != _HASH_SIZE:
            raise CheckpointError(f"checkpoint root hash must be {_HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            object.__setattr__(self, "extensions", tuple(self.extensions))
        for i, ext in enumerate(self.extensions):
            _check_line_value(ext, f"extension line {i}")

    def to_body(self) -> bytes:
        """The note body: ``<origin>\\n<size>\\n<base64 root>\\n`` plus extension lines."""
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @classmethod
    def from_body(cls, body: bytes) -> Checkpoint:
        """Parse and validate a checkpoint note body (exact format, no leniency)."""
        if not isinstance(body, bytes):
            raise CheckpointError(f"checkpoint body must be bytes, got {type(body).__name__}")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CheckpointError(
                f"checkpoint body is not valid UTF-8 at byte {exc.start}"
            ) from None
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint body must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint body needs at least origin, size and root hash lines")
        if any(not line for line in lines):
            raise CheckpointError("checkpoint body must not contain empty lines")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE_RE.fullmatch(size_text):
            raise CheckpointError(
                f"checkpoint size {size_text!r} is not a decimal number without leading zeros"
            )
        root = _b64decode_strict(root_text)
        if root is None or len(root) != _HASH_SIZE:
            raise CheckpointError(
                f"checkpoint root hash {root_text!r} is not canonical base64 of 32 bytes"
            )
        return cls(origin, int(size_text), root, tuple(extensions))

    def sign(self, signer: Ed25519NoteSigner) -> str:
        """The signed note text for this checkpoint."""
        return signer.sign(self.to_body())


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint together with the opened note that carried it."""

    checkpoint: Checkpoint
    note: Note

    @classmethod
    def from_text(
        cls,
        text: bytes | str,
        verifier: Ed25519NoteVerifier,
        *,
        origin: str | None = None,
    ) -> SignedCheckpoint:
        """Open a signed checkpoint and check it came from the expected log.

        ``origin`` defaults to the verifier's key name (the spec says the log's key
        name SHOULD match its origin); a checkpoint for any other origin is rejected
        so one key cannot vouch for another log.
        """
        note = open_note(text, [verifier])
        checkpoint = Checkpoint.from_body(note.body)
        expected = verifier.name if origin is None else origin
        if checkpoint.origin != expected:
            raise CheckpointError(
                f"checkpoint origin {checkpoint.origin!r} is not the expected {expected!r}"
            )
        return cls(checkpoint, note)
