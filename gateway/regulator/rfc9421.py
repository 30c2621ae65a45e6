"""RFC 9421 HTTP Message Signatures with Ed25519: the parts the vpngw profile uses.

Signature bases (section 2.5) over the derived components ``@method``, ``@authority``,
``@path``, ``@query`` and ``@status`` and over field components (with ``;req`` and
``;key``), the Signature-Input and Signature fields for one label, and Ed25519
verification. Which components, parameters and limits a message must have is the
profile's business (gateway.regulator.httpsig). Bytes and strings in; a value, or a
gateway.regulator.signature_errors exception naming the defect, out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.crypto import ed25519_checks
from gateway.regulator.signature_errors import (
    BadSignatureError,
    ComponentsError,
    KeyIdError,
    LabelError,
    MalformedError,
    ParametersError,
)
from gateway.regulator.structured import (
    BareItem,
    InnerList,
    Item,
    Parameters,
    StructuredFieldError,
    parse_dictionary,
    serialize_inner_list,
    serialize_item,
    serialize_member,
)

__all__ = [
    "PARAMETER_ORDER",
    "Component",
    "Headers",
    "MessageView",
    "Received",
    "SignatureParams",
    "build_base",
    "canonical_authority",
    "check_components",
    "field_lines",
    "parse_received",
    "serialize_signature_params",
    "signature_base",
    "verify_ed25519",
]

# --------------------------------------------------------------------------- components


_FIELD_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
# The request components the profile covers; @target-uri, @scheme and @request-target
# are not supported (a signature covering one is refused as not supported).
_REQUEST_DERIVED = frozenset({"@method", "@authority", "@path", "@query"})
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


# The RFC 9421 section 2.3 parameters, in the order they are serialized.
PARAMETER_ORDER = ("created", "expires", "nonce", "keyid", "alg", "tag")


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
        for name in PARAMETER_ORDER:
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
                    f"unknown signature parameter {name!r}; allowed are "
                    + ", ".join(PARAMETER_ORDER)
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


def field_lines(headers: Headers) -> tuple[tuple[str, str], ...]:
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
        object.__setattr__(self, "headers", field_lines(self.headers))

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
            headers=field_lines(headers),
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
        return cls(headers=field_lines(headers), status=status, request=request)

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
        if name == "@method":
            return msg.method
        if name == "@authority":
            return canonical_authority(msg.authority, msg.scheme)
        return path if name == "@path" else f"?{msg.query or ''}"
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


def build_base(components: Sequence[Component], params_value: str, message: MessageView) -> bytes:
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
    return build_base(components, serialize_signature_params(components, params), message)


@dataclass(frozen=True)
class Received:
    """The signature under one label, as received (nothing verified yet)."""

    components: tuple[Component, ...]
    params: SignatureParams
    params_value: str
    signature: bytes


def parse_received(message: MessageView, label: str, who: str) -> Received:
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
    return Received(
        components=tuple(components),
        params=params,
        params_value=serialize_inner_list(member),
        signature=sig_member.value,
    )


def describe(components: Sequence[Component]) -> str:
    return "(" + " ".join(c.serialize() for c in components) + ")"


def check_components(got: Sequence[Component], expected: Sequence[Component]) -> None:
    for want in expected:
        if not any(want.same_as(c) for c in got):
            raise ComponentsError(
                f"covered component {want.serialize()} is missing; cover exactly "
                f"{describe(expected)}"
            )
    if len(got) != len(expected) or not all(
        a.same_as(b) for a, b in zip(got, expected, strict=True)
    ):
        raise ComponentsError(
            f"covered components are {describe(got)}; cover exactly {describe(expected)}, "
            "in that order"
        )


def verify_ed25519(key: Ed25519PublicKey, signature: bytes, base: bytes, keyid: str) -> None:
    """Verify strictly (gateway.crypto.ed25519_checks); the errors name `keyid`."""
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
