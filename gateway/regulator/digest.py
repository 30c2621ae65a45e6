"""RFC 9530 Content-Digest (sha-256) creation and verification."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

from gateway.regulator.signature_errors import DigestError, SignatureError
from gateway.regulator.structured import (
    Item,
    StructuredFieldError,
    parse_dictionary,
    serialize_dictionary,
)

__all__ = [
    "DigestError",
    "SignatureError",
    "content_digest",
    "verify_content_digest",
]


# Algorithms checked when present (RFC 9530 section 5); sha-256 is required.
_ALGORITHMS: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "sha-256": (lambda b: hashlib.sha256(b).digest(), 32),
    "sha-512": (lambda b: hashlib.sha512(b).digest(), 64),
}
_FIX = "send Content-Digest: sha-256=:<base64 of SHA-256 over the exact body bytes>:"


def content_digest(body: bytes) -> str:
    """Return the Content-Digest field value ``sha-256=:<base64>:`` for ``body``."""
    return serialize_dictionary({"sha-256": Item(hashlib.sha256(body).digest())})


def verify_content_digest(header: str | None, body: bytes) -> None:
    """Check a received Content-Digest value against the received body.

    The value must be an RFC 8941 dictionary with a ``sha-256`` byte sequence equal
    to SHA-256 of ``body``.  A ``sha-512`` member, if also present, must match too;
    other algorithms are ignored.  Comparison is constant-time.  Raises DigestError.
    """
    if header is None:
        raise DigestError(f"the message has no Content-Digest header; {_FIX}")
    try:
        members = parse_dictionary(header, reject_duplicates=True)
    except StructuredFieldError as exc:
        raise DigestError(
            f"Content-Digest is not a valid structured dictionary ({exc}); {_FIX}"
        ) from exc
    if "sha-256" not in members:
        raise DigestError(f"Content-Digest has no sha-256 member; {_FIX}")
    for name, (hash_fn, size) in _ALGORITHMS.items():
        member = members.get(name)
        if member is None:
            continue
        if not isinstance(member, Item) or not isinstance(member.value, bytes):
            raise DigestError(f"Content-Digest {name} must be a byte sequence (:<base64>:); {_FIX}")
        if len(member.value) != size:
            raise DigestError(
                f"Content-Digest {name} is {len(member.value)} bytes, expected {size}; {_FIX}"
            )
        if not hmac.compare_digest(member.value, hash_fn(body)):
            actual = base64.b64encode(hash_fn(body)).decode("ascii")
            raise DigestError(
                f"Content-Digest {name} does not match the received body (body {name} is "
                f"{actual}); the body was changed after signing or the digest was computed "
                "over different bytes: hash exactly the bytes sent"
            )
