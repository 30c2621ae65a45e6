"""Property tests: sign → verify round trips, and any flipped byte is refused."""

from __future__ import annotations

import string
from decimal import Decimal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.regulator.digest import DigestError, content_digest, verify_content_digest
from gateway.regulator.httpsig import (
    BadSignatureError,
    SignatureError,
    sign_request,
    sign_response,
    verify_request,
    verify_response,
)
from gateway.regulator.structured import (
    BareItem,
    InnerList,
    Item,
    Member,
    Token,
    parse_dictionary,
    serialize_dictionary,
)

NOW = 1_790_000_000
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
GW_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
KEYS = {"reg-1": KEY.public_key(), "gw-1": GW_KEY.public_key()}

# Path and query characters as they appear on the wire (RFC 3986 pchar and query, encoded).
_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_PCT = st.sampled_from(["%2F", "%20", "%C3%A9", "%25"])
_SEGMENT = st.lists(st.sampled_from(_UNRESERVED + "!$&'()*+,;=:@") | _PCT, max_size=12).map("".join)
PATHS = st.lists(_SEGMENT, min_size=1, max_size=5).map(lambda s: "/" + "/".join(s))
QUERIES = st.lists(st.sampled_from(_UNRESERVED + "!$&'()*+,;=:@/?") | _PCT, max_size=40).map(
    "".join
)
BODIES = st.binary(max_size=2048)
NONCES = st.text(alphabet=_UNRESERVED, min_size=1, max_size=128)
AUTHORITIES = st.sampled_from(["gw.example.net", "GW.Example.NET:443", "10.0.0.1:8443", "[::1]"])

PROPERTY = settings(max_examples=100, deadline=None)


def _resolve(keyid: str) -> Ed25519PublicKey | None:
    return KEYS.get(keyid)


def _sign(body: bytes, path: str, query: str, nonce: str, authority: str) -> dict[str, str]:
    return sign_request(
        private_key=KEY,
        keyid="reg-1",
        authority=authority,
        body=body,
        created=NOW,
        nonce=nonce,
        path=path,
        query=query,
    ).headers()


def _verify(headers: dict[str, str], body: bytes, path: str, query: str, authority: str) -> None:
    verify_request(
        headers=headers,
        method="POST",
        authority=authority,
        path=path,
        query=query,
        body=body,
        now=NOW + 1,
        resolve_key=_resolve,
    )


@PROPERTY
@given(body=BODIES, path=PATHS, query=QUERIES, nonce=NONCES, authority=AUTHORITIES)
def test_request_round_trip(body: bytes, path: str, query: str, nonce: str, authority: str) -> None:
    headers = _sign(body, path, query, nonce, authority)
    verified = verify_request(
        headers=headers,
        method="POST",
        authority=authority,
        path=path,
        query=query,
        body=body,
        now=NOW + 1,
        resolve_key=_resolve,
    )
    assert verified.nonce == nonce
    assert verified.keyid == "reg-1"


@PROPERTY
@given(body=BODIES, path=PATHS, query=QUERIES, data=st.data())
def test_flipping_any_signature_byte_is_refused(
    body: bytes, path: str, query: str, data: st.DataObject
) -> None:
    signed = sign_request(
        private_key=KEY,
        keyid="reg-1",
        authority="gw.example.net",
        body=body,
        created=NOW,
        nonce="n",
        path=path,
        query=query,
    )
    index = data.draw(st.integers(0, 63), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    sig = bytearray(signed.signature_bytes)
    sig[index] ^= 1 << bit
    headers = signed.headers()
    headers["Signature"] = serialize_dictionary({"reg": Item(bytes(sig))})
    try:
        _verify(headers, body, path, query, "gw.example.net")
    except BadSignatureError:
        return
    raise AssertionError("a flipped signature bit was accepted")


@PROPERTY
@given(body=BODIES, data=st.data())
def test_flipping_any_byte_of_the_signature_header_is_refused(
    body: bytes, data: st.DataObject
) -> None:
    headers = _sign(body, "/regulator/v1/queries", "", "n", "gw.example.net")
    for name in ("Signature", "Signature-Input"):
        raw = bytearray(headers[name].encode())
        index = data.draw(st.integers(0, len(raw) - 1), label=f"{name} byte")
        offset = data.draw(st.integers(1, 94), label="shift")
        replacement = 0x20 + (raw[index] - 0x20 + offset) % 95  # another printable byte
        raw[index] = replacement
        tampered = dict(headers)
        tampered[name] = raw.decode()
        try:
            _verify(tampered, body, "/regulator/v1/queries", "", "gw.example.net")
        except SignatureError:
            continue
        # Only a change that leaves the parsed value identical may pass (e.g. spaces).
        assert parse_dictionary(tampered[name]) == parse_dictionary(headers[name])


@PROPERTY
@given(body=BODIES.filter(bool), data=st.data())
def test_flipping_any_body_byte_is_refused(body: bytes, data: st.DataObject) -> None:
    headers = _sign(body, "/regulator/v1/queries", "", "n", "gw.example.net")
    index = data.draw(st.integers(0, len(body) - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    tampered = bytearray(body)
    tampered[index] ^= 1 << bit
    try:
        _verify(headers, bytes(tampered), "/regulator/v1/queries", "", "gw.example.net")
    except DigestError:
        return
    raise AssertionError("a flipped body bit was accepted")


@PROPERTY
@given(body=BODIES, extra=st.binary(min_size=1, max_size=16))
def test_appending_to_the_body_is_refused(body: bytes, extra: bytes) -> None:
    try:
        verify_content_digest(content_digest(body), body + extra)
    except DigestError:
        return
    raise AssertionError("an extended body was accepted")


@PROPERTY
@given(req_body=BODIES, body=BODIES, status=st.integers(100, 599), data=st.data())
def test_response_round_trip_and_tampering(
    req_body: bytes, body: bytes, status: int, data: st.DataObject
) -> None:
    request = sign_request(
        private_key=KEY, keyid="reg-1", authority="gw", body=req_body, created=NOW, nonce="n"
    )
    response = sign_response(
        private_key=GW_KEY,
        keyid="gw-1",
        status=status,
        body=body,
        created=NOW,
        request_signature=request.signature_bytes,
    )
    verified = verify_response(
        headers=response.headers(),
        status=status,
        body=body,
        now=NOW,
        resolve_key=_resolve,
        request_signature=request.signature_bytes,
    )
    assert verified.keyid == "gw-1"
    # Bound to this request: any other request signature is refused.
    other = bytearray(request.signature_bytes)
    other[data.draw(st.integers(0, 63), label="byte")] ^= 1
    try:
        verify_response(
            headers=response.headers(),
            status=status,
            body=body,
            now=NOW,
            resolve_key=_resolve,
            request_signature=bytes(other),
        )
    except BadSignatureError:
        return
    raise AssertionError("a response was accepted for another request")


# ----------------------------------------------------------------------------- structured fields

_KEYS = st.from_regex(r"[a-z*][a-z0-9_\-.*]{0,8}", fullmatch=True)
_BARE: st.SearchStrategy[BareItem] = st.one_of(
    st.integers(-999_999_999_999_999, 999_999_999_999_999),
    st.decimals(
        min_value=Decimal("-999999999999.999"),
        max_value=Decimal("999999999999.999"),
        places=3,
        allow_nan=False,
        allow_infinity=False,
    ),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.from_regex(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]{0,10}", fullmatch=True).map(Token),
    st.binary(max_size=24),
    st.booleans(),
)
_PARAMS = st.dictionaries(_KEYS, _BARE, max_size=3).map(lambda d: tuple(d.items()))
_ITEMS = st.builds(Item, _BARE, _PARAMS)
_MEMBERS: st.SearchStrategy[Member] = st.one_of(
    _ITEMS, st.builds(InnerList, st.lists(_ITEMS, max_size=4).map(tuple), _PARAMS)
)


def _typed(value: object) -> object:
    """Compare parsed values with their types (True must not equal 1)."""
    if isinstance(value, Item):
        return ("item", _typed(value.value), _typed(value.params))
    if isinstance(value, InnerList):
        return ("list", _typed(value.items), _typed(value.params))
    if isinstance(value, tuple):
        return tuple(_typed(v) for v in value)
    if isinstance(value, Decimal):
        return ("Decimal", value.normalize())
    return (type(value).__name__, value)


@PROPERTY
@given(st.dictionaries(_KEYS, _MEMBERS, max_size=5))
def test_structured_dictionary_round_trip(members: dict[str, Member]) -> None:
    text = serialize_dictionary(members)
    parsed = parse_dictionary(text, reject_duplicates=True)
    assert list(parsed) == list(members)
    assert [_typed(v) for v in parsed.values()] == [_typed(v) for v in members.values()]
    assert serialize_dictionary(parsed) == text
