"""WireGuard key handling: Curve25519 key pairs, preshared keys, strict base64 parsing."""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from provisioning.errors import InvalidInput

KEY_BYTES = 32


@dataclass(frozen=True)
class KeyPair:
    private_key: str
    public_key: str

    def __repr__(self) -> str:  # never print the private half
        return f"KeyPair(public_key={self.public_key!r})"


def generate_key_pair() -> KeyPair:
    private = X25519PrivateKey.generate()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return KeyPair(encode_key(raw_private), encode_key(public))


def public_key_of(private_key: str) -> str:
    private = X25519PrivateKey.from_private_bytes(decode_key(private_key, "private_key"))
    return encode_key(private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def generate_preshared_key() -> str:
    return encode_key(secrets.token_bytes(KEY_BYTES))


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_key(text: object, field: str = "public_key") -> bytes:
    """Parse a WireGuard key: exactly 44 characters of standard base64 for 32 bytes."""
    if not isinstance(text, str):
        raise InvalidInput(field, "must be a string of standard base64 (44 characters)")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise InvalidInput(field, "is not valid standard base64 (use `wg pubkey` output)") from exc
    if len(raw) != KEY_BYTES or encode_key(raw) != text:
        raise InvalidInput(field, f"must decode to exactly {KEY_BYTES} bytes (got {len(raw)})")
    return raw


def normalise_public_key(text: object, field: str = "public_key") -> str:
    raw = decode_key(text, field)
    if raw == bytes(KEY_BYTES):
        raise InvalidInput(field, "the all-zero key is not a valid public key")
    return encode_key(raw)
