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

from provisioning.errors import GatewayPublicKey, InvalidInput

KEY_BYTES = 32

# Curve25519 u-coordinates of small order, as in libsodium's blocklist: 0, 1, the two
# points of order 8, p - 1, and the non-canonical p and p + 1. Every X25519 exchange with
# one of them gives an all-zero secret, which WireGuard refuses: such a peer could never
# connect. The top bit is ignored (RFC 7748 masks it), so it is ignored here too.
SMALL_ORDER_PUBLIC_KEYS: tuple[bytes, ...] = tuple(bytes.fromhex(h) for h in (
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
))


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
    if raw[:31] + bytes([raw[31] & 0x7F]) in SMALL_ORDER_PUBLIC_KEYS:
        raise InvalidInput(
            field,
            "is a Curve25519 point of small order (such as the all-zero key): every "
            "handshake with it fails; send the `wg pubkey` output of a freshly generated key",
        )
    return encode_key(raw)


def refuse_gateway_key(public_key: str, gateway_public_key: str, field: str = "public_key") -> None:
    """A peer holding the interface's own key could never complete a handshake."""
    if public_key == gateway_public_key:
        raise GatewayPublicKey(
            f"{field}: this is the gateway's own interface public key, not a device's; "
            "generate a key pair on the device (`wg genkey | tee private.key | wg pubkey`)",
            field=field,
        )
