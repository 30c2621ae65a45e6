"""RFC 9530 Content-Digest creation and verification."""

from __future__ import annotations

import pytest

from gateway.regulator.digest import (
    DigestError,
    SignatureError,
    content_digest,
    verify_content_digest,
)

# RFC 9530 Appendix B.1: content is the JSON object {"hello": "world"} followed by an LF.
RFC9530_BODY = b'{"hello": "world"}\n'
RFC9530_SHA256 = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
# RFC 9530 Section 2 / Appendix C.2: sha-512 of the same content.
RFC9530_SHA512 = (
    "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCs"
    "yRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:"
)
# RFC 9421 Appendix B.2 test-request: 18-byte body, sha-512 only.
RFC9421_BODY = b'{"hello": "world"}'
RFC9421_SHA512 = (
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdV"
    "LvRwEmTHWXvJwew==:"
)


def test_rfc9530_example_digest() -> None:
    assert content_digest(RFC9530_BODY) == RFC9530_SHA256
    verify_content_digest(RFC9530_SHA256, RFC9530_BODY)


def test_sha256_and_sha512_together_are_both_checked() -> None:
    verify_content_digest(f"{RFC9530_SHA256}, {RFC9530_SHA512}", RFC9530_BODY)
    with pytest.raises(DigestError, match="sha-512 does not match"):
        verify_content_digest(f"{RFC9530_SHA256}, {RFC9421_SHA512}", RFC9530_BODY)


def test_sha512_alone_is_refused_because_profile_requires_sha256() -> None:
    with pytest.raises(DigestError, match="no sha-256 member"):
        verify_content_digest(RFC9421_SHA512, RFC9421_BODY)


def test_unknown_algorithms_are_ignored() -> None:
    verify_content_digest(f"md5=:AAAA:, {RFC9530_SHA256}, foo=1", RFC9530_BODY)


def test_empty_body() -> None:
    # SHA-256 of zero bytes.
    header = content_digest(b"")
    assert header == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    verify_content_digest(header, b"")


def test_body_changed_after_digest_is_refused() -> None:
    with pytest.raises(DigestError) as info:
        verify_content_digest(RFC9530_SHA256, RFC9421_BODY)
    err = info.value
    assert isinstance(err, SignatureError)
    assert err.check == "digest"
    assert str(err).startswith("digest: Content-Digest sha-256 does not match the received body")


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "no Content-Digest header"),
        ("", "no sha-256 member"),
        ("garbage!!", "not a valid structured dictionary"),
        ("SHA-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:", "not a valid structured"),
        ("sha-256=RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=", "not a valid structured"),
        ('sha-256="RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg="', "must be a byte sequence"),
        ("sha-256=(:AAAA:)", "must be a byte sequence"),
        ("sha-256=:AAAA:", "is 3 bytes, expected 32"),
        (f"{RFC9530_SHA256}, {RFC9530_SHA256}", "not a valid structured dictionary"),
    ],
)
def test_malformed_digest_headers_are_refused(header: str | None, reason: str) -> None:
    with pytest.raises(DigestError, match=reason):
        verify_content_digest(header, RFC9530_BODY)
