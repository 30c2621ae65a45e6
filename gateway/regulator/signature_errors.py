"""Why a signed message was refused: one class per check, each naming what to fix.

Shared by the RFC 9421 code (gateway.regulator.rfc9421), the Content-Digest check
(gateway.regulator.digest) and the vpngw profile (gateway.regulator.httpsig).
"""

from __future__ import annotations

from typing import ClassVar

from provisioning.errors import DomainError

__all__ = [
    "AlgError",
    "BadSignatureError",
    "ComponentsError",
    "CreatedError",
    "DigestError",
    "ExpiresError",
    "KeyIdError",
    "LabelError",
    "MalformedError",
    "NonceError",
    "ParametersError",
    "SignatureError",
    "TagError",
]


class SignatureError(DomainError):
    """Base of every signature refusal: HTTP 401 `signature-<check>`.

    ``check`` is a short machine name of the failed check; ``str(error)`` starts with it
    and then says what was wrong and what the sender must fix.
    """

    check: ClassVar[str] = "signature"
    status = 401
    code = "signature-signature"
    title = "Request signature refused"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.code = f"signature-{cls.check}"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.check}: {message}", check=self.check)
        self.reason = message
        self.headers["WWW-Authenticate"] = 'Signature realm="vpngw-regulator", label="reg"'


class DigestError(SignatureError):
    """Content-Digest missing, malformed, without sha-256, or not matching the body."""

    check: ClassVar[str] = "digest"


class MalformedError(SignatureError):
    """Signature-Input or Signature is not valid RFC 8941, or a member has the wrong shape."""

    check: ClassVar[str] = "malformed"


class LabelError(SignatureError):
    """The profile's signature label is absent from Signature-Input or Signature."""

    check: ClassVar[str] = "label"


class ComponentsError(SignatureError):
    """Covered components differ from the profile, or one is missing from the message."""

    check: ClassVar[str] = "components"


class ParametersError(SignatureError):
    """A signature parameter is missing, unknown, repeated or of the wrong type."""

    check: ClassVar[str] = "parameters"


class TagError(SignatureError):
    """The ``tag`` parameter is not the profile's tag."""

    check: ClassVar[str] = "tag"


class AlgError(SignatureError):
    """The ``alg`` parameter is not ``ed25519``."""

    check: ClassVar[str] = "alg"


class CreatedError(SignatureError):
    """``created`` is too far from the verifier's clock."""

    check: ClassVar[str] = "created"


class ExpiresError(SignatureError):
    """``expires`` is in the past, not after ``created``, or too far after it."""

    check: ClassVar[str] = "expires"


class KeyIdError(SignatureError):
    """``keyid`` is unknown or revoked (the resolver returned no key)."""

    check: ClassVar[str] = "keyid"


class NonceError(SignatureError):
    """``nonce`` is empty, or (raised by the caller's nonce store) was seen before."""

    check: ClassVar[str] = "nonce"


class BadSignatureError(SignatureError):
    """The Ed25519 signature does not verify over the signature base."""

    check: ClassVar[str] = "signature"
