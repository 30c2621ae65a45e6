"""WireGuard key helpers: length checks, public-key derivation and text encodings."""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

KEY_LEN = 32
ZERO_KEY = bytes(KEY_LEN)


def check_key(key: bytes, what: str = "key") -> bytes:
    """Return `key` unchanged if it is 32 raw bytes, else raise ValueError."""
    if not isinstance(key, bytes) or len(key) != KEY_LEN:
        raise ValueError(f"{what} must be {KEY_LEN} raw bytes")
    return key


def public_key_of(private_key: bytes) -> bytes:
    """Curve25519 public key of a WireGuard private key (clamping is implied)."""
    check_key(private_key, "private key")
    return X25519PrivateKey.from_private_bytes(private_key).public_key().public_bytes_raw()


def preshared_key_digest(preshared_key: bytes) -> bytes:
    """Digest that lets desired and actual PSKs be compared without carrying the secret."""
    return hashlib.sha256(b"vpngw-psk\x00" + check_key(preshared_key, "preshared key")).digest()


def to_base64(key: bytes) -> str:
    return base64.b64encode(check_key(key)).decode("ascii")


def from_base64(text: str | bytes) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("key is not valid base64") from exc
    return check_key(raw)


def to_hex(key: bytes) -> str:
    return check_key(key).hex()


def from_hex(text: str) -> bytes:
    if len(text) != 2 * KEY_LEN:
        raise ValueError(f"key must be {2 * KEY_LEN} hex digits")
    try:
        raw = bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError("key is not valid hex") from exc
    return check_key(raw)
