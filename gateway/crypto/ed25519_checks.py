"""Strict Ed25519: refuse small-order or non-canonical keys and malleable signatures.

OpenSSL (under the cryptography package) checks [S]B = R + [k]A and accepts any 32 bytes
as a public key A. Under a key of small order [k]A takes at most 8 values, so the
signature R = identity, S = 0 (0x01 and 63 zero bytes) verifies for every message
under the identity key and for about one message in eight under the all-zero key,
with no private key involved. Refusing such keys, small-order or non-canonical R and
S >= L leaves forgery as hard as Ed25519 promises and every signature one encoding.
Pure integer arithmetic; no I/O.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "GROUP_ORDER",
    "SMALL_ORDER_POINTS",
    "UnsafeKeyError",
    "UnsafeSignatureError",
    "check_public_key",
    "check_signature",
    "load_public_key",
    "public_key_defect",
    "raw_public_key",
    "signature_defect",
    "verify",
]

FIELD_PRIME = 2**255 - 19
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493  # L
_D = -121665 * pow(121666, FIELD_PRIME - 2, FIELD_PRIME) % FIELD_PRIME
_SIGN_BIT = 1 << 255
KEY_SIZE = 32
SIGNATURE_SIZE = 64

# The eight points of order dividing 8 (the curve's torsion subgroup), canonically
# encoded: the identity, (0, -1) of order 2, (±sqrt(-1), 0) of order 4, and four points
# of order 8. tests/unit/test_ed25519_checks.py derives the same set independently.
SMALL_ORDER_POINTS: tuple[bytes, ...] = tuple(bytes.fromhex(h) for h in (
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
))
# Compared without the sign bit: the other sign of a small-order y is either another
# small-order point or "-0" (x = 0 with the sign bit set), a non-canonical encoding.
_SMALL_ORDER_Y = frozenset(int.from_bytes(p, "little") & ~_SIGN_BIT for p in SMALL_ORDER_POINTS)


class UnsafeKeyError(ValueError):
    """The bytes are not a safe Ed25519 public key (small order, non-canonical, off the curve)."""


class UnsafeSignatureError(ValueError):
    """The signature is malformed, malleable, or built on a small-order R."""


def _point_defect(raw: bytes) -> str | None:
    return _encoding_defect(raw) or _curve_defect(raw)


def _encoding_defect(raw: bytes) -> str | None:
    """The cheap checks: size, canonical y, small order."""
    if len(raw) != KEY_SIZE:
        return f"must be {KEY_SIZE} bytes, got {len(raw)}"
    y = int.from_bytes(raw, "little") & ~_SIGN_BIT
    if y >= FIELD_PRIME:
        return "is not canonically encoded (its y coordinate is not below 2^255 - 19)"
    if y in _SMALL_ORDER_Y:
        return "is a point of small order (such as the identity or the all-zero key)"
    return None


def _curve_defect(raw: bytes) -> str | None:
    """Whether a canonically encoded y is a point of the curve: two modular powers
    (about 200 µs in Python), so only done where it can change the outcome."""
    y = int.from_bytes(raw, "little") & ~_SIGN_BIT
    # RFC 8032 5.1.3: x^2 = (y^2 - 1) / (d y^2 + 1) must have a square root.
    y2 = y * y % FIELD_PRIME
    x2 = (y2 - 1) * pow(_D * y2 + 1, FIELD_PRIME - 2, FIELD_PRIME) % FIELD_PRIME
    if pow(x2, (FIELD_PRIME - 1) // 2, FIELD_PRIME) != 1:
        return "is not a point on the Ed25519 curve"
    return None


@lru_cache(maxsize=1024)
def public_key_defect(raw: bytes) -> str | None:
    """Why ``raw`` must not be trusted as an Ed25519 public key, or None if it may.

    Remembered per key: a gateway checks the same few registered keys on every request.
    """
    return _point_defect(raw)


def signature_defect(signature: bytes) -> str | None:
    """Why ``signature`` must be refused before any verification, or None."""
    return _cheap_signature_defect(signature) or _r_curve_defect(signature)


def _cheap_signature_defect(signature: bytes) -> str | None:
    if len(signature) != SIGNATURE_SIZE:
        return f"must be {SIGNATURE_SIZE} bytes, got {len(signature)}"
    defect = _encoding_defect(signature[:KEY_SIZE])
    if defect is not None:
        return f"its R {defect}"
    if int.from_bytes(signature[KEY_SIZE:], "little") >= GROUP_ORDER:
        return "its S is not below the group order L (a malleated signature)"
    return None


def _r_curve_defect(signature: bytes) -> str | None:
    defect = _curve_defect(signature[:KEY_SIZE])
    return None if defect is None else f"its R {defect}"


def check_public_key(raw: bytes) -> None:
    """Raise UnsafeKeyError naming the defect of an unsafe public key."""
    defect = public_key_defect(raw)
    if defect is not None:
        raise UnsafeKeyError(f"Ed25519 public key {defect}")


def check_signature(signature: bytes) -> None:
    """Raise UnsafeSignatureError naming the defect of an unsafe signature."""
    _refuse(signature_defect(signature))


def _refuse(defect: str | None) -> None:
    if defect is not None:
        raise UnsafeSignatureError(f"Ed25519 signature {defect}")


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(raw: bytes) -> Ed25519PublicKey:
    """A public key from 32 raw bytes, refusing unsafe ones (UnsafeKeyError)."""
    check_public_key(raw)
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(key: Ed25519PublicKey, signature: bytes, message: bytes) -> None:
    """Verify strictly; raises UnsafeKeyError, UnsafeSignatureError or InvalidSignature.

    The key is checked here too, so a key stored before these checks existed is refused
    at use, not only at registration.
    """
    check_public_key(raw_public_key(key))
    _refuse(_cheap_signature_defect(signature))
    try:
        key.verify(signature, message)
    except InvalidSignature:
        # Whether R is on the curve is asked only now: OpenSSL compares R with the
        # canonical encoding of the point it computes, so an R off the curve never
        # verifies, and the check can only name why a refused signature was refused.
        _refuse(_r_curve_defect(signature))
        raise
