"""The vpngw regulator signature profile (DESIGN section 6) over RFC 9421 and RFC 9530.

Requests: label ``reg``, tag ``vpngw-regulator-v1``; answers: label ``gw``, tag
``vpngw-provider-v1``, bound to the request's signature. Every component, parameter and
limit is fixed here; the generic signature-base code is gateway.regulator.rfc9421 and
the refusals gateway.regulator.signature_errors (all re-exported here).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.regulator.digest import content_digest, verify_content_digest
from gateway.regulator.rfc9421 import (
    PARAMETER_ORDER,
    Component,
    Headers,
    MessageView,
    SignatureParams,
    build_base,
    canonical_authority,
    check_components,
    field_lines,
    parse_received,
    serialize_signature_params,
    signature_base,
    verify_ed25519,
)
from gateway.regulator.signature_errors import (
    AlgError,
    BadSignatureError,
    ComponentsError,
    CreatedError,
    DigestError,
    ExpiresError,
    KeyIdError,
    LabelError,
    MalformedError,
    NonceError,
    ParametersError,
    SignatureError,
    TagError,
)
from gateway.regulator.structured import InnerList, Item, serialize_dictionary

__all__ = [
    "ALG",
    "CONTENT_TYPE",
    "MAX_CLOCK_SKEW",
    "MAX_NONCE_LENGTH",
    "MAX_VALIDITY",
    "REQUEST_COMPONENTS",
    "REQUEST_LABEL",
    "REQUEST_METHOD",
    "REQUEST_PATH",
    "REQUEST_TAG",
    "RESPONSE_COMPONENTS",
    "RESPONSE_LABEL",
    "RESPONSE_TAG",
    "AlgError",
    "BadSignatureError",
    "Component",
    "ComponentsError",
    "CreatedError",
    "DigestError",
    "ExpiresError",
    "Headers",
    "KeyIdError",
    "LabelError",
    "MalformedError",
    "MessageView",
    "NonceError",
    "ParametersError",
    "SignatureError",
    "SignatureParams",
    "SignedMessage",
    "TagError",
    "VerifiedRequest",
    "VerifiedResponse",
    "canonical_authority",
    "read_keyid",
    "serialize_signature_params",
    "sign_request",
    "sign_response",
    "signature_base",
    "verify_request",
    "verify_response",
]

REQUEST_COMPONENTS: tuple[Component, ...] = (
    Component("@method"),
    Component("@authority"),
    Component("@path"),
    Component("@query"),
    Component("content-type"),
    Component("content-digest"),
)
RESPONSE_COMPONENTS: tuple[Component, ...] = (
    Component("@status"),
    Component("content-type"),
    Component("content-digest"),
    Component("signature", (("req", True), ("key", "reg"))),
)

ALG = "ed25519"
REQUEST_LABEL = "reg"
REQUEST_TAG = "vpngw-regulator-v1"
RESPONSE_LABEL = "gw"
RESPONSE_TAG = "vpngw-provider-v1"
REQUEST_METHOD = "POST"
REQUEST_PATH = "/regulator/v1/queries"
CONTENT_TYPE = "application/json"
MAX_CLOCK_SKEW = 60  # |created - now| may be at most this many seconds
MAX_VALIDITY = 300  # expires - created may be at most this many seconds
MAX_NONCE_LENGTH = 128  # the nonce store's column width

_REQUEST_PARAMS = PARAMETER_ORDER
_RESPONSE_PARAMS = ("created", "keyid", "alg", "tag")


# --------------------------------------------------------------------------- signing


@dataclass(frozen=True)
class SignedMessage:
    """The header values to send with a signed message (use them byte for byte)."""

    content_type: str
    content_digest: str
    signature_input: str
    signature: str
    signature_bytes: bytes
    signature_base: bytes

    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": self.content_type,
            "Content-Digest": self.content_digest,
            "Signature-Input": self.signature_input,
            "Signature": self.signature,
        }


def _sign(
    private_key: Ed25519PrivateKey,
    label: str,
    components: Sequence[Component],
    params: SignatureParams,
    message: MessageView,
    content_type: str,
    digest: str,
) -> SignedMessage:
    base = signature_base(components, params, message)
    sig = private_key.sign(base)
    inner = InnerList(tuple(c.to_item() for c in components), params.to_parameters())
    return SignedMessage(
        content_type=content_type,
        content_digest=digest,
        signature_input=serialize_dictionary({label: inner}),
        signature=serialize_dictionary({label: Item(sig)}),
        signature_bytes=sig,
        signature_base=base,
    )


def sign_request(
    *,
    private_key: Ed25519PrivateKey,
    keyid: str,
    authority: str,
    body: bytes,
    created: int,
    nonce: str,
    expires: int | None = None,
    method: str = REQUEST_METHOD,
    path: str = REQUEST_PATH,
    query: str = "",
    content_type: str = CONTENT_TYPE,
    scheme: str = "https",
) -> SignedMessage:
    """Sign a regulator request with the profile (label ``reg``).

    ``expires`` defaults to ``created + MAX_VALIDITY``.  ``nonce`` must be fresh per
    request (e.g. ``secrets.token_urlsafe(16)``); ``authority`` is the Host the request
    is sent to.  Raises ValueError for arguments the server would refuse.
    """
    if expires is None:
        expires = created + MAX_VALIDITY
    if type(created) is not int or type(expires) is not int:
        raise ValueError("created and expires must be int Unix seconds")
    if not created < expires <= created + MAX_VALIDITY:
        raise ValueError(f"expires must be after created and at most {MAX_VALIDITY} s after it")
    if not 0 < len(nonce) <= MAX_NONCE_LENGTH or not keyid:
        raise ValueError(f"nonce must be 1 to {MAX_NONCE_LENGTH} characters and keyid non-empty")
    digest = content_digest(body)
    message = MessageView.for_request(
        method=method,
        authority=authority,
        path=path,
        query=query,
        headers={"content-type": content_type, "content-digest": digest},
        scheme=scheme,
    )
    params = SignatureParams(
        created=created, expires=expires, nonce=nonce, keyid=keyid, alg=ALG, tag=REQUEST_TAG
    )
    return _sign(
        private_key, REQUEST_LABEL, REQUEST_COMPONENTS, params, message, content_type, digest
    )


def _request_signature_view(request_signature: bytes) -> MessageView:
    # Only the request's Signature field is covered (``"signature";req;key="reg"``).
    value = serialize_dictionary({REQUEST_LABEL: Item(request_signature)})
    return MessageView(headers=(("signature", value),))


def sign_response(
    *,
    private_key: Ed25519PrivateKey,
    keyid: str,
    status: int,
    body: bytes,
    created: int,
    request_signature: bytes,
    content_type: str = CONTENT_TYPE,
) -> SignedMessage:
    """Sign a gateway response (label ``gw``), binding it to the request's ``reg`` signature.

    ``request_signature`` is ``VerifiedRequest.signature`` of the request answered.
    """
    if type(created) is not int:
        raise ValueError("created must be int Unix seconds")
    if not keyid:
        raise ValueError("keyid must be non-empty")
    digest = content_digest(body)
    message = MessageView.for_response(
        status=status,
        headers={"content-type": content_type, "content-digest": digest},
        request=_request_signature_view(request_signature),
    )
    params = SignatureParams(created=created, keyid=keyid, alg=ALG, tag=RESPONSE_TAG)
    return _sign(
        private_key, RESPONSE_LABEL, RESPONSE_COMPONENTS, params, message, content_type, digest
    )


# --------------------------------------------------------------------------- verifying


@dataclass(frozen=True)
class VerifiedRequest:
    """A request that passed every profile check except nonce replay.

    The caller must refuse it (raise NonceError) if ``(keyid, nonce)`` was seen before,
    and otherwise record ``(keyid, nonce)`` until ``expires``.
    """

    keyid: str
    nonce: str
    created: int
    expires: int
    signature: bytes


@dataclass(frozen=True)
class VerifiedResponse:
    """A response whose ``gw`` signature verified and is bound to our request."""

    keyid: str
    created: int
    signature: bytes


def _check_params(
    params: SignatureParams,
    allowed: Sequence[str],
    tag: str,
    now: float | None,
    max_skew: int,
    max_validity: int,
) -> None:
    for name in PARAMETER_ORDER:
        present = getattr(params, name) is not None
        if name in allowed and not present:
            raise ParametersError(
                f"required parameter {name!r} is missing; include " + ", ".join(allowed)
            )
        if name not in allowed and present:
            raise ParametersError(
                f"parameter {name!r} is not allowed here; include only " + ", ".join(allowed)
            )
    if params.tag != tag:
        raise TagError(f'tag is {params.tag!r}; sign with tag="{tag}"')
    if params.alg != ALG:
        raise AlgError(f'alg is {params.alg!r}; sign with Ed25519 and alg="{ALG}"')
    assert params.created is not None  # guaranteed by the loop above
    if params.expires is not None:
        if params.expires <= params.created:
            raise ExpiresError(f"expires={params.expires} is not after created={params.created}")
        if params.expires - params.created > max_validity:
            raise ExpiresError(
                f"expires is {params.expires - params.created} s after created "
                f"(limit {max_validity} s); set expires <= created + {max_validity}"
            )
    if now is None:
        return  # offline verification of an archived response: no clock to compare with
    skew = params.created - now
    if abs(skew) > max_skew:
        direction = "ahead of" if skew > 0 else "behind"
        raise CreatedError(
            f"created={params.created} is {abs(skew):.0f} s {direction} the verifier clock "
            f"(limit {max_skew} s); synchronise the signer's clock (NTP) and set created "
            "to the current time when signing"
        )
    if params.expires is not None and params.expires <= now:
        raise ExpiresError(
            f"expires={params.expires} has passed; sign a fresh request "
            f"(expires within {max_validity} s after created)"
        )


def _resolve(resolve_key: Callable[[str], Ed25519PublicKey | None], keyid: str) -> Ed25519PublicKey:
    key = resolve_key(keyid)
    if key is None:
        raise KeyIdError(
            f"keyid {keyid!r} is unknown or revoked; sign with a registered, active key"
        )
    if not isinstance(key, Ed25519PublicKey):
        raise KeyIdError(f"keyid {keyid!r} is not an Ed25519 key")
    return key


def read_keyid(headers: Headers, label: str = REQUEST_LABEL) -> str:
    """The ``keyid`` claimed in Signature-Input (UNVERIFIED: only for pre-loading the key)."""
    received = parse_received(MessageView(headers=field_lines(headers)), label, "message")
    if not received.params.keyid:
        raise ParametersError("required parameter 'keyid' is missing")
    return received.params.keyid


def verify_request(
    *,
    headers: Headers,
    method: str,
    authority: str,
    path: str,
    query: str | None,
    body: bytes,
    now: float,
    resolve_key: Callable[[str], Ed25519PublicKey | None],
    scheme: str = "https",
    max_skew: int = MAX_CLOCK_SKEW,
    max_validity: int = MAX_VALIDITY,
) -> VerifiedRequest:
    """Apply every profile check to a received regulator request.

    ``authority`` is the Host header as received; ``path`` and ``query`` are the raw
    (still percent-encoded) path and query string without ``?``; ``now`` is the server
    clock in Unix seconds.  ``max_skew``/``max_validity`` default to the profile's 60 s and
    300 s.  The nonce replay check is left to the caller (see VerifiedRequest).  Raises a
    SignatureError subclass on any failure; its ``check`` names the failed check.
    """
    message = MessageView.for_request(
        method=method, authority=authority, path=path, query=query, headers=headers, scheme=scheme
    )
    received = parse_received(message, REQUEST_LABEL, "request")
    check_components(received.components, REQUEST_COMPONENTS)
    params = received.params
    _check_params(params, _REQUEST_PARAMS, REQUEST_TAG, now, max_skew, max_validity)
    assert params.keyid is not None and params.nonce is not None
    assert params.created is not None and params.expires is not None
    if not 0 < len(params.nonce) <= MAX_NONCE_LENGTH:
        raise NonceError(
            f"nonce must be 1 to {MAX_NONCE_LENGTH} characters, got {len(params.nonce)}; "
            'send a fresh random nonce="..." (e.g. 22 base64url characters) with every request'
        )
    key = _resolve(resolve_key, params.keyid)
    base = build_base(received.components, received.params_value, message)
    verify_content_digest(message.field_value("content-digest"), body)
    verify_ed25519(key, received.signature, base, params.keyid)
    return VerifiedRequest(
        keyid=params.keyid,
        nonce=params.nonce,
        created=params.created,
        expires=params.expires,
        signature=received.signature,
    )


def verify_response(
    *,
    headers: Headers,
    status: int,
    body: bytes,
    now: float | None,
    resolve_key: Callable[[str], Ed25519PublicKey | None],
    request_signature: bytes,
    max_skew: int = MAX_CLOCK_SKEW,
) -> VerifiedResponse:
    """Check a gateway response against the profile (client side).

    ``request_signature`` is ``SignedMessage.signature_bytes`` of the request sent; the
    response must cover it, so a response to another request is refused.  ``now`` is the
    client clock; pass ``None`` to verify an archived answer offline (no freshness check).
    """
    message = MessageView.for_response(
        status=status, headers=headers, request=_request_signature_view(request_signature)
    )
    received = parse_received(message, RESPONSE_LABEL, "response")
    check_components(received.components, RESPONSE_COMPONENTS)
    params = received.params
    _check_params(params, _RESPONSE_PARAMS, RESPONSE_TAG, now, max_skew, MAX_VALIDITY)
    assert params.keyid is not None and params.created is not None
    key = _resolve(resolve_key, params.keyid)
    base = build_base(received.components, received.params_value, message)
    verify_content_digest(message.field_value("content-digest"), body)
    verify_ed25519(key, received.signature, base, params.keyid)
    return VerifiedResponse(
        keyid=params.keyid, created=params.created, signature=received.signature
    )
