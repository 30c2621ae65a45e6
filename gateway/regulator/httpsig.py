"""RFC 9421 HTTP Message Signatures (Ed25519) and the fixed vpngw regulator API profile."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.crypto import ed25519_checks
from gateway.regulator.digest import (
    DigestError,
    SignatureError,
    content_digest,
    verify_content_digest,
)
from gateway.regulator.structured import (
    BareItem,
    InnerList,
    Item,
    Parameters,
    StructuredFieldError,
    parse_dictionary,
    serialize_dictionary,
    serialize_inner_list,
    serialize_item,
    serialize_member,
)

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

# --------------------------------------------------------------------------- refusals


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


# --------------------------------------------------------------------------- components


_FIELD_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_REQUEST_DERIVED = frozenset(
    {"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}
)
_SUPPORTED_COMPONENT_PARAMS = frozenset({"req", "key"})


def _typed(params: Parameters) -> frozenset[tuple[str, str, BareItem]]:
    # Typed so that ``;req`` (True) never equals ``;req=1``: bool is an int in Python.
    return frozenset((k, type(v).__name__, v) for k, v in params)


@dataclass(frozen=True)
class Component:
    """A component identifier: a derived name (``@method``) or a lowercase field name,
    with optional parameters (``req`` and ``key`` are supported)."""

    name: str
    params: Parameters = ()

    def to_item(self) -> Item:
        return Item(self.name, self.params)

    def serialize(self) -> str:
        """The identifier as it appears in the signature base and Signature-Input."""
        try:
            return serialize_item(self.to_item())
        except StructuredFieldError as exc:
            raise ComponentsError(f"component identifier {self.name!r} is invalid: {exc}") from exc

    def same_as(self, other: Component) -> bool:
        """Identifier equality per RFC 9421 2.1 (parameter order is not significant)."""
        return self.name == other.name and _typed(self.params) == _typed(other.params)


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

_REQUEST_PARAMS = ("created", "expires", "nonce", "keyid", "alg", "tag")
_RESPONSE_PARAMS = ("created", "keyid", "alg", "tag")


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class SignatureParams:
    """Signature parameters; serialized in the order created, expires, nonce, keyid, alg, tag
    (absent ones omitted)."""

    created: int | None = None
    expires: int | None = None
    nonce: str | None = None
    keyid: str | None = None
    alg: str | None = None
    tag: str | None = None

    def to_parameters(self) -> Parameters:
        out: list[tuple[str, BareItem]] = []
        for name in _REQUEST_PARAMS:
            value = getattr(self, name)
            if value is not None:
                out.append((name, value))
        return tuple(out)

    @classmethod
    def from_parameters(cls, params: Parameters) -> SignatureParams:
        """Read parsed parameters; refuses unknown names and wrong types (ParametersError)."""
        ints: dict[str, int] = {}
        strs: dict[str, str] = {}
        for name, value in params:
            if name in ints or name in strs:
                raise ParametersError(f"parameter {name!r} appears twice; send it once")
            if name in ("created", "expires"):
                if type(value) is not int:
                    raise ParametersError(
                        f"{name} must be an Integer of Unix seconds (e.g. {name}=1700000000), "
                        f"got {value!r}"
                    )
                ints[name] = value
            elif name in ("nonce", "keyid", "alg", "tag"):
                if type(value) is not str:
                    raise ParametersError(
                        f'{name} must be a quoted String (e.g. {name}="..."), got {value!r}'
                    )
                strs[name] = value
            else:
                raise ParametersError(
                    f"unknown signature parameter {name!r}; the profile allows only "
                    + ", ".join(_REQUEST_PARAMS)
                )
        return cls(
            created=ints.get("created"),
            expires=ints.get("expires"),
            nonce=strs.get("nonce"),
            keyid=strs.get("keyid"),
            alg=strs.get("alg"),
            tag=strs.get("tag"),
        )


def serialize_signature_params(components: Sequence[Component], params: SignatureParams) -> str:
    """The ``@signature-params`` value: the inner list that also goes in Signature-Input."""
    for component in components:
        component.serialize()  # a bad identifier is a ComponentsError, not a parameter one
    inner = InnerList(tuple(c.to_item() for c in components), params.to_parameters())
    try:
        return serialize_inner_list(inner)
    except StructuredFieldError as exc:
        raise ParametersError(f"signature parameters cannot be serialized: {exc}") from exc


# --------------------------------------------------------------------------- messages


# Header field lines: a mapping (a multidict's ``items()`` keeps repeats) or (name, value) pairs.
Headers = Mapping[str, str] | Iterable[tuple[str, str]]


def _field_lines(headers: Headers) -> tuple[tuple[str, str], ...]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((name.lower(), value) for name, value in pairs)


@dataclass(frozen=True)
class MessageView:
    """What the signature base needs from one HTTP message.

    A request sets ``method``/``authority``/``path``/``query`` (``query`` without the
    ``?``; ``None`` or ``""`` when there is none; ``path`` and ``query`` exactly as sent,
    still percent-encoded).  A response sets ``status`` and, for ``;req`` components,
    ``request``.  ``headers`` holds field lines in order; names are lowercased.
    """

    headers: tuple[tuple[str, str], ...] = ()
    method: str | None = None
    scheme: str = "https"
    authority: str | None = None
    path: str | None = None
    query: str | None = None
    status: int | None = None
    request: MessageView | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "headers", _field_lines(self.headers))

    @classmethod
    def for_request(
        cls,
        *,
        method: str,
        authority: str,
        path: str,
        query: str | None = None,
        headers: Headers = (),
        scheme: str = "https",
    ) -> MessageView:
        return cls(
            headers=_field_lines(headers),
            method=method,
            scheme=scheme,
            authority=authority,
            path=path,
            query=query,
        )

    @classmethod
    def for_response(
        cls, *, status: int, headers: Headers = (), request: MessageView | None = None
    ) -> MessageView:
        return cls(headers=_field_lines(headers), status=status, request=request)

    def field_lines(self, name: str) -> list[str]:
        """The values of every field line named ``name`` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for n, value in self.headers if n == wanted]

    def field_value(self, name: str) -> str | None:
        """RFC 9421 2.1 combined value: each line trimmed, joined by ``", "``; None if absent."""
        lines = self.field_lines(name)
        if not lines:
            return None
        return ", ".join(line.strip(" \t") for line in lines)


def canonical_authority(authority: str, scheme: str = "https") -> str:
    """RFC 9421 2.2.3 ``@authority``: host lowercased, the scheme's default port removed."""
    a = authority.strip().lower()
    if a.startswith("["):
        end = a.find("]")
        if end < 0:
            raise ComponentsError(f"@authority {authority!r} has an unterminated IPv6 literal")
        host, rest = a[: end + 1], a[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ComponentsError(f"@authority {authority!r} is not host[:port]")
        port = rest[1:]
    else:
        host, _, port = a.partition(":")
        if ":" in port:
            raise ComponentsError(f"@authority {authority!r} is not host[:port]")
    if not host or "@" in host or any(c in host for c in " /?#,"):
        raise ComponentsError(f"@authority {authority!r} is not a valid host[:port]")
    if port and not port.isdigit():
        raise ComponentsError(f"@authority {authority!r} has a non-numeric port")
    default = {"https": "443", "http": "80"}.get(scheme.lower())
    if not port or port == default:
        return host
    return f"{host}:{port}"


# --------------------------------------------------------------------------- signature base


def _derived_value(name: str, msg: MessageView) -> str:
    if name in _REQUEST_DERIVED:
        if msg.method is None or msg.authority is None or msg.path is None:
            raise ComponentsError(f"{name} is a request component but the message is not a request")
        path = msg.path or "/"
        if not path.startswith("/"):
            raise ComponentsError(f"@path {msg.path!r} must be an absolute path starting with '/'")
        query = msg.query or ""
        authority = canonical_authority(msg.authority, msg.scheme)
        scheme = msg.scheme.lower()
        suffix = f"?{query}" if query else ""
        values = {
            "@method": msg.method,
            "@target-uri": f"{scheme}://{authority}{path}{suffix}",
            "@authority": authority,
            "@scheme": scheme,
            "@request-target": f"{path}{suffix}",
            "@path": path,
            "@query": f"?{query}",
        }
        return values[name]
    if name == "@status":
        if msg.status is None:
            raise ComponentsError(
                "@status is a response component but the message is not a response"
            )
        if type(msg.status) is not int or not 100 <= msg.status <= 999:
            raise ComponentsError(f"@status {msg.status!r} is not a three-digit status code")
        return str(msg.status)
    if name == "@signature-params":
        raise ComponentsError('"@signature-params" must not be listed as a covered component')
    raise ComponentsError(f"derived component {name!r} is not supported")


def _component_value(component: Component, message: MessageView) -> str:
    params: dict[str, BareItem] = {}
    for param, param_value in component.params:
        if param in params:
            raise ComponentsError(f"component {component.name!r} repeats parameter {param!r}")
        if param not in _SUPPORTED_COMPONENT_PARAMS:
            raise ComponentsError(f"component parameter {param!r} is not supported")
        params[param] = param_value
    target = message
    if "req" in params:
        if params["req"] is not True:
            raise ComponentsError(f"component {component.name!r}: req must be a bare flag (;req)")
        if message.status is None or message.request is None:
            raise ComponentsError(
                f"component {component.name!r};req needs a response with its related request"
            )
        target = message.request
    name = component.name
    if name.startswith("@"):
        if "key" in params:
            raise ComponentsError(f"derived component {name!r} cannot take the key parameter")
        return _derived_value(name, target)
    if not _FIELD_NAME_RE.match(name):
        raise ComponentsError(f"field component {name!r} must be a lowercase field name")
    value = target.field_value(name)
    if value is None:
        where = "related request" if target is not message else "message"
        raise ComponentsError(f"covered component {name!r} is missing from the {where}; send it")
    if "key" not in params:
        return value
    key = params["key"]
    if not isinstance(key, str):
        raise ComponentsError(f"component {name!r}: key must be a quoted String")
    try:
        members = parse_dictionary(value)
    except StructuredFieldError as exc:
        raise ComponentsError(f"field {name!r} is not a structured dictionary: {exc}") from exc
    if key not in members:
        raise ComponentsError(f"field {name!r} has no dictionary member {key!r}")
    return serialize_member(members[key])


def _build_base(components: Sequence[Component], params_value: str, message: MessageView) -> bytes:
    lines: list[str] = []
    seen: list[Component] = []
    for component in components:
        if any(component.same_as(s) for s in seen):
            raise ComponentsError(f"component {component.serialize()} is listed twice")
        seen.append(component)
        value = _component_value(component, message)
        if not value.isascii() or "\n" in value or "\r" in value:
            raise ComponentsError(
                f"component {component.serialize()} has a value with non-ASCII or line-break "
                "characters, which a signature base cannot carry"
            )
        lines.append(f"{component.serialize()}: {value}")
    lines.append(f'"@signature-params": {params_value}')
    return "\n".join(lines).encode("ascii")


def signature_base(
    components: Sequence[Component], params: SignatureParams, message: MessageView
) -> bytes:
    """The RFC 9421 section 2.5 signature base (ASCII bytes, no trailing newline)."""
    return _build_base(components, serialize_signature_params(components, params), message)


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


@dataclass(frozen=True)
class _Received:
    components: tuple[Component, ...]
    params: SignatureParams
    params_value: str
    signature: bytes


def _parse_received(message: MessageView, label: str, who: str) -> _Received:
    si_value = message.field_value("signature-input")
    sig_value = message.field_value("signature")
    if si_value is None or sig_value is None:
        missing = "Signature-Input" if si_value is None else "Signature"
        raise LabelError(
            f"the {who} has no {missing} header; sign it with RFC 9421 under label {label!r}"
        )
    try:
        inputs = parse_dictionary(si_value, reject_duplicates=True)
    except StructuredFieldError as exc:
        raise MalformedError(
            f"Signature-Input is not a valid RFC 8941 dictionary ({exc}); fix its serialization"
        ) from exc
    try:
        sigs = parse_dictionary(sig_value, reject_duplicates=True)
    except StructuredFieldError as exc:
        raise MalformedError(
            f"Signature is not a valid RFC 8941 dictionary ({exc}); fix its serialization"
        ) from exc
    for name, members in (("Signature-Input", inputs), ("Signature", sigs)):
        if label not in members:
            found = ", ".join(repr(k) for k in members) or "none"
            raise LabelError(
                f"{name} has no signature labelled {label!r} (labels found: {found}); "
                f"use label {label!r}"
            )
    member = inputs[label]
    if not isinstance(member, InnerList):
        raise MalformedError(f"Signature-Input {label!r} must be an inner list of components")
    components: list[Component] = []
    for item in member.items:
        if type(item.value) is not str:
            raise MalformedError(
                f"Signature-Input {label!r} component identifiers must be quoted strings, "
                f"got {item.value!r}"
            )
        components.append(Component(item.value, item.params))
    params = SignatureParams.from_parameters(member.params)
    sig_member = sigs[label]
    if (
        not isinstance(sig_member, Item)
        or not isinstance(sig_member.value, bytes)
        or sig_member.params
    ):
        raise MalformedError(
            f"Signature {label!r} must be a byte sequence without parameters (:<base64>:)"
        )
    return _Received(
        components=tuple(components),
        params=params,
        params_value=serialize_inner_list(member),
        signature=sig_member.value,
    )


def _describe(components: Sequence[Component]) -> str:
    return "(" + " ".join(c.serialize() for c in components) + ")"


def _check_components(got: Sequence[Component], expected: Sequence[Component]) -> None:
    for want in expected:
        if not any(want.same_as(c) for c in got):
            raise ComponentsError(
                f"covered component {want.serialize()} is missing; cover exactly "
                f"{_describe(expected)}"
            )
    if len(got) != len(expected) or not all(
        a.same_as(b) for a, b in zip(got, expected, strict=True)
    ):
        raise ComponentsError(
            f"covered components are {_describe(got)}; cover exactly {_describe(expected)}, "
            "in that order"
        )


def _check_params(
    params: SignatureParams,
    allowed: Sequence[str],
    tag: str,
    now: float | None,
    max_skew: int,
    max_validity: int,
) -> None:
    for name in _REQUEST_PARAMS:
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


def _verify_signature(key: Ed25519PublicKey, signature: bytes, base: bytes, keyid: str) -> None:
    if len(signature) != 64:
        raise BadSignatureError(
            f"signature is {len(signature)} bytes; an Ed25519 signature is 64 bytes"
        )
    try:
        ed25519_checks.verify(key, signature, base)
    except ed25519_checks.UnsafeKeyError as exc:
        # A key stored before registration refused such keys is refused at use.
        raise KeyIdError(
            f"the key of keyid {keyid!r} is refused ({exc}): anyone could forge its "
            "signatures; register a new key (`vpngw-regulator keygen`)"
        ) from None
    except ed25519_checks.UnsafeSignatureError as exc:
        raise BadSignatureError(
            f"{exc}; sign with a standard Ed25519 implementation (RFC 8032)"
        ) from None
    except InvalidSignature:
        raise BadSignatureError(
            f"signature does not verify with keyid {keyid!r}; sign the exact RFC 9421 signature "
            "base with that key's private key, and make sure no covered component "
            "(method, authority, path, query, Content-Type, Content-Digest) changes in transit"
        ) from None


def read_keyid(headers: Headers, label: str = REQUEST_LABEL) -> str:
    """The ``keyid`` claimed in Signature-Input (UNVERIFIED: only for pre-loading the key)."""
    received = _parse_received(MessageView(headers=_field_lines(headers)), label, "message")
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
    received = _parse_received(message, REQUEST_LABEL, "request")
    _check_components(received.components, REQUEST_COMPONENTS)
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
    base = _build_base(received.components, received.params_value, message)
    verify_content_digest(message.field_value("content-digest"), body)
    _verify_signature(key, received.signature, base, params.keyid)
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
    received = _parse_received(message, RESPONSE_LABEL, "response")
    _check_components(received.components, RESPONSE_COMPONENTS)
    params = received.params
    _check_params(params, _RESPONSE_PARAMS, RESPONSE_TAG, now, max_skew, MAX_VALIDITY)
    assert params.keyid is not None and params.created is not None
    key = _resolve(resolve_key, params.keyid)
    base = _build_base(received.components, received.params_value, message)
    verify_content_digest(message.field_value("content-digest"), body)
    _verify_signature(key, received.signature, base, params.keyid)
    return VerifiedResponse(
        keyid=params.keyid, created=params.created, signature=received.signature
    )
