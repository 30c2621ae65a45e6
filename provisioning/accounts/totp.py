"""RFC 6238 time-based one-time passwords (and the RFC 4226 HOTP they rest on): pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

STEP_SECONDS = 30
DIGITS = 6
SECRET_BYTES = 20  # 160 bits, the size RFC 4226 recommends for HMAC-SHA-1
_DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


class InvalidSecret(ValueError):
    """The base32 text is not a usable TOTP secret."""


def hotp(key: bytes, counter: int, *, digits: int = DIGITS, digest: str = "sha1") -> str:
    """RFC 4226 section 5.3: dynamic truncation of HMAC(key, counter)."""
    mac = hmac.new(key, struct.pack(">Q", counter), _DIGESTS[digest]).digest()
    offset = mac[-1] & 0x0F
    code = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def time_step(unix_seconds: int, *, step: int = STEP_SECONDS) -> int:
    return unix_seconds // step


def totp(
    key: bytes, unix_seconds: int, *, digits: int = DIGITS, digest: str = "sha1",
    step: int = STEP_SECONDS,
) -> str:
    return hotp(key, time_step(unix_seconds, step=step), digits=digits, digest=digest)


def match_step(
    key: bytes, code: str, unix_seconds: int, *, after_step: int | None = None, window: int = 1
) -> int | None:
    """The time step `code` belongs to (now ± window steps), or None.

    Steps at or before `after_step` (the last one used) never match, so a code seen
    once cannot be replayed within its validity.
    """
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    now = time_step(unix_seconds)
    found = None
    for candidate in range(now - window, now + window + 1):
        # Compare every candidate so timing does not reveal which one matched.
        if hmac.compare_digest(hotp(key, candidate), code) and found is None:
            found = candidate
    if found is None or (after_step is not None and found <= after_step):
        return None
    return found


def new_secret() -> str:
    """A fresh secret as unpadded base32, the form authenticator apps accept."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def decode_secret(text: str) -> bytes:
    cleaned = text.replace(" ", "").upper()
    try:
        key = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (ValueError, TypeError) as exc:
        raise InvalidSecret("the second-factor secret is not base32") from exc
    if len(key) != SECRET_BYTES:
        raise InvalidSecret(f"the second-factor secret must be {SECRET_BYTES} bytes")
    return key


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """otpauth:// URI (Google Authenticator key URI format) for a QR code."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode({"secret": secret, "issuer": issuer, "algorithm": "SHA1",
                       "digits": DIGITS, "period": STEP_SECONDS})
    return f"otpauth://totp/{label}?{query}"
