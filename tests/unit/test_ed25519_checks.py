"""Strict Ed25519 checks: the forgery under degenerate keys, and the exact sets refused."""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto import ed25519_checks as checks

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
IDENTITY_KEY = bytes([1]) + bytes(31)  # "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
ZERO_KEY = bytes(32)
FORGED = bytes([1]) + bytes(63)  # R = identity, S = 0: made without any private key

# --- an independent affine Edwards implementation, only to derive the torsion points ---

Point = tuple[int, int]


def add(a: Point, b: Point) -> Point:
    (x1, y1), (x2, y2) = a, b
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return x3, y3


def multiply(n: int, point: Point) -> Point:
    result: Point = (0, 1)
    while n:
        if n & 1:
            result = add(result, point)
        point = add(point, point)
        n >>= 1
    return result


def decompress(y: int, sign: int) -> Point | None:
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * pow(2, (P - 1) // 4, P) % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y


def encode(point: Point) -> bytes:
    x, y = point
    return (y | (x & 1) << 255).to_bytes(32, "little")


def test_the_listed_small_order_points_are_exactly_the_torsion_subgroup() -> None:
    # The curve's group is Z/8 x Z/L, so [L]Q lies in the 8-torsion for any point Q and
    # generates it when its order is exactly 8; derived here without the module's list.
    rng = random.Random(7)
    generator: Point | None = None
    while generator is None:
        q = decompress(rng.randrange(P), rng.randrange(2))
        if q is not None:
            t = multiply(L, q)
            generator = t if multiply(4, t) != (0, 1) else None
    torsion = {encode(multiply(i, generator)) for i in range(8)}
    assert len(torsion) == 8
    assert torsion == set(checks.SMALL_ORDER_POINTS)


# --- the attack ---


@pytest.mark.parametrize("key", [IDENTITY_KEY, ZERO_KEY], ids=["identity", "all-zero"])
def test_a_degenerate_key_lets_a_signature_be_forged_and_strict_verify_refuses_it(
    key: bytes,
) -> None:
    public = Ed25519PublicKey.from_public_bytes(key)
    messages = [b"regulator query %d" % i for i in range(32)]
    # The premise: the library alone accepts the forgery for some (identity: all) messages.
    accepted = 0
    for message in messages:
        try:
            public.verify(FORGED, message)
            accepted += 1
        except InvalidSignature:
            pass
    assert accepted > 0
    for message in messages:
        with pytest.raises(checks.UnsafeKeyError, match="small order"):
            checks.verify(public, FORGED, message)


def test_a_small_order_r_is_refused_even_under_a_sound_key() -> None:
    public = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(checks.UnsafeSignatureError, match="R is a point of small order"):
        checks.verify(public, FORGED, b"anything")


# --- keys ---


@pytest.mark.parametrize("point", checks.SMALL_ORDER_POINTS, ids=lambda p: p.hex()[:8])
def test_every_small_order_key_is_refused_in_either_sign(point: bytes) -> None:
    flipped = point[:31] + bytes([point[31] ^ 0x80])
    for raw in (point, flipped):
        assert "small order" in (checks.public_key_defect(raw) or "")
        with pytest.raises(checks.UnsafeKeyError):
            checks.load_public_key(raw)


@pytest.mark.parametrize("y", [P + i for i in range(19)])
def test_non_canonical_y_is_refused(y: int) -> None:
    for sign in (0, 1):
        raw = (y | sign << 255).to_bytes(32, "little")
        assert "not canonically encoded" in (checks.public_key_defect(raw) or "")


def test_a_point_off_the_curve_and_a_wrong_length_are_refused() -> None:
    off_curve = next(
        y for y in range(2, 100) if decompress(y, 0) is None
    ).to_bytes(32, "little")
    assert checks.public_key_defect(off_curve) == "is not a point on the Ed25519 curve"
    assert checks.public_key_defect(bytes(31)) == "must be 32 bytes, got 31"


def test_real_keys_and_signatures_pass() -> None:
    for i in range(64):
        private = Ed25519PrivateKey.generate()
        public = private.public_key()
        raw = checks.raw_public_key(public)
        assert checks.public_key_defect(raw) is None
        message = b"message %d" % i
        signature = private.sign(message)
        assert checks.signature_defect(signature) is None
        checks.verify(checks.load_public_key(raw), signature, message)
        with pytest.raises(InvalidSignature):
            checks.verify(public, signature, message + b"!")


def test_a_malleated_s_is_refused() -> None:
    private = Ed25519PrivateKey.generate()
    signature = private.sign(b"m")
    s = int.from_bytes(signature[32:], "little")
    for bad in (s + L, L, 2**256 - 1):
        malleated = signature[:32] + bad.to_bytes(32, "little")
        assert "S is not below the group order" in (checks.signature_defect(malleated) or "")
    assert checks.signature_defect(signature[:63]) == "must be 64 bytes, got 63"


def test_an_r_off_the_curve_is_refused_by_verify_and_named() -> None:
    """verify() asks whether R is on the curve only once OpenSSL has refused the
    signature; the outcome and its reason are those of checking first."""
    private = Ed25519PrivateKey.generate()
    signature = private.sign(b"m")
    off_curve = next(y for y in range(2, 100) if decompress(y, 0) is None)
    forged = off_curve.to_bytes(32, "little") + signature[32:]
    assert checks.signature_defect(forged) == "its R is not a point on the Ed25519 curve"
    with pytest.raises(checks.UnsafeSignatureError, match="R is not a point on the Ed25519"):
        checks.verify(private.public_key(), forged, b"m")
    with pytest.raises(InvalidSignature):  # R on the curve, wrong message: plain refusal
        checks.verify(private.public_key(), signature, b"other")
