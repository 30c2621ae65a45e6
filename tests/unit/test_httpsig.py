"""RFC 9421 signature bases, the regulator request/response profile, and every refusal."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from multidict import CIMultiDict

from gateway.regulator.digest import content_digest
from gateway.regulator.httpsig import (
    ALG,
    REQUEST_COMPONENTS,
    REQUEST_PATH,
    REQUEST_TAG,
    RESPONSE_COMPONENTS,
    RESPONSE_TAG,
    AlgError,
    BadSignatureError,
    Component,
    ComponentsError,
    CreatedError,
    DigestError,
    ExpiresError,
    KeyIdError,
    LabelError,
    MalformedError,
    MessageView,
    NonceError,
    ParametersError,
    SignatureError,
    SignatureParams,
    TagError,
    canonical_authority,
    read_keyid,
    serialize_signature_params,
    sign_request,
    sign_response,
    signature_base,
    verify_request,
    verify_response,
)
from gateway.regulator.rfc9421 import build_base
from gateway.regulator.structured import (
    BareItem,
    InnerList,
    Item,
    Parameters,
    Token,
    parse_dictionary,
    serialize_dictionary,
    serialize_inner_list,
)

# ----------------------------------------------------------------------------- RFC 9421 vectors

# RFC 9421 Appendix B.1.4, test-key-ed25519.
RFC_PRIVATE_PEM = b"""-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
"""
RFC_PUBLIC_PEM = b"""-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
"""

# RFC 9421 Appendix B.2, the test-request message:
#   POST /foo?param=Value&Pet=dog HTTP/1.1
#   Host: example.com
#   Date: Tue, 20 Apr 2021 02:07:55 GMT
#   Content-Type: application/json
#   Content-Digest: sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BN\
#     NyealdVLvRwEmTHWXvJwew==:
#   Content-Length: 18
#
#   {"hello": "world"}
RFC_REQUEST = MessageView.for_request(
    method="POST",
    authority="example.com",
    path="/foo",
    query="param=Value&Pet=dog",
    headers=[
        ("Host", "example.com"),
        ("Date", "Tue, 20 Apr 2021 02:07:55 GMT"),
        ("Content-Type", "application/json"),
        (
            "Content-Digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BN"
            "NyealdVLvRwEmTHWXvJwew==:",
        ),
        ("Content-Length", "18"),
    ],
)

# RFC 9421 Appendix B.2.6, Signing a Request Using ed25519.
B26_COMPONENTS = tuple(
    Component(n)
    for n in ("date", "@method", "@path", "@authority", "content-type", "content-length")
)
B26_PARAMS = SignatureParams(created=1618884473, keyid="test-key-ed25519")
B26_BASE = (
    b'"date": Tue, 20 Apr 2021 02:07:55 GMT\n'
    b'"@method": POST\n'
    b'"@path": /foo\n'
    b'"@authority": example.com\n'
    b'"content-type": application/json\n'
    b'"content-length": 18\n'
    b'"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length")'
    b';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
B26_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPp"
    "BKRCw==:"
)


def _rfc_keys() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    private = load_pem_private_key(RFC_PRIVATE_PEM, None)
    public = load_pem_public_key(RFC_PUBLIC_PEM)
    assert isinstance(private, Ed25519PrivateKey)
    assert isinstance(public, Ed25519PublicKey)
    return private, public


def test_rfc9421_b26_signature_base_is_exact() -> None:
    assert signature_base(B26_COMPONENTS, B26_PARAMS, RFC_REQUEST) == B26_BASE


def test_rfc9421_b26_signature_is_reproduced_byte_for_byte() -> None:
    private, public = _rfc_keys()
    signature = private.sign(B26_BASE)  # Ed25519 is deterministic
    published = parse_dictionary(B26_SIGNATURE)["sig-b26"]
    assert isinstance(published, Item)
    assert signature == published.value
    assert serialize_dictionary({"sig-b26": Item(signature)}) == B26_SIGNATURE
    public.verify(signature, B26_BASE)


def test_rfc9421_b26_signature_input_round_trips() -> None:
    assert (
        "sig-b26=" + serialize_signature_params(B26_COMPONENTS, B26_PARAMS) == B26_SIGNATURE_INPUT
    )
    member = parse_dictionary(B26_SIGNATURE_INPUT)["sig-b26"]
    assert isinstance(member, InnerList)
    components = [Component(str(i.value), i.params) for i in member.items]
    params = SignatureParams.from_parameters(member.params)
    assert params == B26_PARAMS
    assert signature_base(components, params, RFC_REQUEST) == B26_BASE


# ----------------------------------------------------------------------------- derived components


def _value(name: str, message: MessageView, params: Parameters = ()) -> str:
    base = signature_base([Component(name, params)], SignatureParams(), message)
    first = base.decode().split("\n", 1)[0]
    return first.split(": ", 1)[1]


def test_rfc9421_derived_component_examples() -> None:
    # RFC 9421 2.2.2 and 2.2.5: POST /path?param=value HTTP/1.1, Host: www.example.com, HTTPS.
    msg = MessageView.for_request(
        method="POST", authority="www.example.com", path="/path", query="param=value"
    )
    assert _value("@authority", msg) == "www.example.com"
    assert _value("@path", msg) == "/path"
    assert _value("@query", msg) == "?param=value"
    assert _value("@method", msg) == "POST"


@pytest.mark.parametrize("name", ["@target-uri", "@request-target", "@scheme"])
def test_derived_components_outside_the_profile_are_not_supported(name: str) -> None:
    msg = MessageView.for_request(method="POST", authority="a.example", path="/x")
    with pytest.raises(ComponentsError, match="not supported"):
        _value(name, msg)


def test_query_absent_or_empty_is_a_lone_question_mark() -> None:
    for query in (None, ""):
        msg = MessageView.for_request(method="GET", authority="a.example", path="/x", query=query)
        assert _value("@query", msg) == "?"


def test_empty_path_is_slash_and_path_is_kept_encoded() -> None:
    msg = MessageView.for_request(method="GET", authority="a.example", path="")
    assert _value("@path", msg) == "/"
    msg = MessageView.for_request(method="GET", authority="a.example", path="/a%20b/%C3%A9")
    assert _value("@path", msg) == "/a%20b/%C3%A9"


def test_relative_path_is_refused() -> None:
    msg = MessageView.for_request(method="GET", authority="a.example", path="x/y")
    with pytest.raises(ComponentsError, match="absolute path"):
        _value("@path", msg)


@pytest.mark.parametrize(
    ("authority", "scheme", "expected"),
    [
        ("Example.COM", "https", "example.com"),
        ("example.com:443", "https", "example.com"),
        ("example.com:443", "http", "example.com:443"),
        ("example.com:80", "http", "example.com"),
        ("example.com:8443", "https", "example.com:8443"),
        ("example.com:", "https", "example.com"),
        ("[2001:DB8::1]:443", "https", "[2001:db8::1]"),
        ("[2001:db8::1]:8443", "https", "[2001:db8::1]:8443"),
        ("10.0.0.1:443", "HTTPS", "10.0.0.1"),
    ],
)
def test_authority_normalization(authority: str, scheme: str, expected: str) -> None:
    assert canonical_authority(authority, scheme) == expected


@pytest.mark.parametrize(
    "authority", ["", ":443", "a:b:c", "[::1", "[::1]x", "host:port", "user@host", "a b"]
)
def test_bad_authorities_are_refused(authority: str) -> None:
    with pytest.raises(ComponentsError):
        canonical_authority(authority)


def test_status_component() -> None:
    assert _value("@status", MessageView.for_response(status=200)) == "200"
    with pytest.raises(ComponentsError, match="three-digit"):
        _value("@status", MessageView.for_response(status=42))


def test_field_lines_are_trimmed_and_combined_in_order() -> None:
    msg = MessageView.for_request(
        method="GET",
        authority="a.example",
        path="/",
        headers=[("X-Multi", "  one "), ("Other", "z"), ("x-multi", "two\t"), ("X-Empty", "")],
    )
    assert _value("x-multi", msg) == "one, two"
    base = signature_base([Component("x-empty")], SignatureParams(), msg)
    assert base.startswith(b'"x-empty": \n')


def test_multidict_headers_keep_repeated_lines() -> None:
    headers = CIMultiDict([("Cache-Control", "max-age=60"), ("Cache-Control", "must-revalidate")])
    msg = MessageView.for_request(method="GET", authority="a.example", path="/", headers=headers)
    assert _value("cache-control", msg) == "max-age=60, must-revalidate"


def test_dictionary_member_by_key() -> None:
    msg = MessageView.for_request(
        method="GET",
        authority="a.example",
        path="/",
        headers=[("Example-Dict", " a=1, b=2;x=1;y=2, c=(a   b c)")],
    )
    assert _value("example-dict", msg, (("key", "a"),)) == "1"
    assert _value("example-dict", msg, (("key", "b"),)) == "2;x=1;y=2"
    assert _value("example-dict", msg, (("key", "c"),)) == "(a b c)"
    with pytest.raises(ComponentsError, match="no dictionary member"):
        _value("example-dict", msg, (("key", "zz"),))


def test_req_component_reads_the_related_request() -> None:
    request = MessageView(headers=(("signature", "reg=:AAEC:, other=:Aw==:"),))
    response = MessageView.for_response(status=200, request=request)
    component = Component("signature", (("req", True), ("key", "reg")))
    base = signature_base([component], SignatureParams(), response)
    assert base.split(b"\n")[0] == b'"signature";req;key="reg": :AAEC:'


@pytest.mark.parametrize(
    ("components", "message", "reason"),
    [
        ([Component("x-missing")], RFC_REQUEST, "missing from the message"),
        ([Component("@method"), Component("@method")], RFC_REQUEST, "listed twice"),
        ([Component("@signature-params")], RFC_REQUEST, "must not be listed"),
        ([Component("@query-param")], RFC_REQUEST, "not supported"),
        ([Component("Content-Type")], RFC_REQUEST, "lowercase field name"),
        ([Component("content-type", (("sf", True),))], RFC_REQUEST, "not supported"),
        ([Component("@method", (("key", "a"),))], RFC_REQUEST, "cannot take the key"),
        ([Component("@status")], RFC_REQUEST, "not a response"),
        ([Component("@method")], MessageView.for_response(status=200), "not a request"),
        ([Component("signature", (("req", True),))], RFC_REQUEST, "needs a response"),
        (
            [Component("signature", (("req", True),))],
            MessageView.for_response(status=200, request=MessageView()),
            "missing from the related request",
        ),
        (
            [Component("x")],
            MessageView.for_request(
                method="GET", authority="a", path="/", headers=[("x", "caf\u00e9")]
            ),
            "non-ASCII",
        ),
        (
            [Component("x")],
            MessageView.for_request(method="GET", authority="a", path="/", headers=[("x", "a\nb")]),
            "line-break",
        ),
    ],
)
def test_bad_components_are_refused(
    components: list[Component], message: MessageView, reason: str
) -> None:
    with pytest.raises(ComponentsError, match=reason):
        signature_base(components, SignatureParams(), message)


def test_component_identity_ignores_parameter_order_but_not_types() -> None:
    a = Component("signature", (("req", True), ("key", "reg")))
    assert a.same_as(Component("signature", (("key", "reg"), ("req", True))))
    assert not a.same_as(Component("signature", (("req", 1), ("key", "reg"))))
    assert not a.same_as(Component("signature", (("key", "reg"),)))


# ----------------------------------------------------------------------------- the profile

NOW = 1_790_000_000
KEYID = "pta-2026-01"
NONCE = "c2FsdC1ub25jZS0wMDE"
AUTHORITY = "gw.example.net"
BODY = b'{"query": {"kind": "attribution.tunnel_ip", "ip": "10.100.0.7"}}'
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
GW_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
GW_KEYID = "gw-1"


def _resolver(keyid: str) -> Ed25519PublicKey | None:
    return {KEYID: KEY.public_key(), GW_KEYID: GW_KEY.public_key()}.get(keyid)


def _signed(body: bytes = BODY, **kwargs: object) -> dict[str, str]:
    options: dict[str, object] = {
        "private_key": KEY,
        "keyid": KEYID,
        "authority": AUTHORITY,
        "created": NOW,
        "nonce": NONCE,
    }
    options.update(kwargs)
    return sign_request(body=body, **options).headers()  # type: ignore[arg-type]


def _verify(
    headers: dict[str, str] | list[tuple[str, str]],
    *,
    body: bytes = BODY,
    method: str = "POST",
    authority: str = AUTHORITY,
    path: str = REQUEST_PATH,
    query: str | None = "",
    now: float = NOW,
) -> None:
    verify_request(
        headers=headers,
        method=method,
        authority=authority,
        path=path,
        query=query,
        body=body,
        now=now,
        resolve_key=_resolver,
    )


def _refusal(error: type[SignatureError], check: str, headers: object, **kwargs: object) -> str:
    with pytest.raises(error) as info:
        _verify(headers, **kwargs)  # type: ignore[arg-type]
    assert info.value.check == check
    assert str(info.value).startswith(f"{check}: ")
    return str(info.value)


DEFAULT_PARAMS: Parameters = (
    ("created", NOW),
    ("expires", NOW + 300),
    ("nonce", NONCE),
    ("keyid", KEYID),
    ("alg", ALG),
    ("tag", REQUEST_TAG),
)


def _custom(
    components: tuple[Component, ...] = REQUEST_COMPONENTS,
    params: Parameters = DEFAULT_PARAMS,
    *,
    label: str = "reg",
    key: Ed25519PrivateKey = KEY,
) -> dict[str, str]:
    """A correctly signed request that deviates from the profile as told."""
    headers = {"Content-Type": "application/json", "Content-Digest": content_digest(BODY)}
    message = MessageView.for_request(
        method="POST", authority=AUTHORITY, path=REQUEST_PATH, query="", headers=headers
    )
    inner = InnerList(tuple(c.to_item() for c in components), params)
    base = build_base(components, serialize_inner_list(inner), message)
    headers["Signature-Input"] = serialize_dictionary({label: inner})
    headers["Signature"] = serialize_dictionary({label: Item(key.sign(base))})
    return headers


def _with_param(name: str, value: BareItem | None) -> Parameters:
    out = [(k, v) for k, v in DEFAULT_PARAMS if k != name]
    if value is not None:
        out.append((name, value))
    return tuple(out)


def test_sign_request_emits_the_profile_headers_byte_for_byte() -> None:
    signed = sign_request(
        private_key=KEY, keyid=KEYID, authority=AUTHORITY, body=BODY, created=NOW, nonce=NONCE
    )
    assert signed.signature_input == (
        'reg=("@method" "@authority" "@path" "@query" "content-type" "content-digest")'
        f';created={NOW};expires={NOW + 300};nonce="{NONCE}";keyid="{KEYID}"'
        ';alg="ed25519";tag="vpngw-regulator-v1"'
    )
    assert signed.signature == "reg=:" + base64.b64encode(signed.signature_bytes).decode() + ":"
    assert signed.content_digest == content_digest(BODY)
    assert signed.content_type == "application/json"
    assert signed.signature_base == (
        b'"@method": POST\n'
        b'"@authority": gw.example.net\n'
        b'"@path": /regulator/v1/queries\n'
        b'"@query": ?\n'
        b'"content-type": application/json\n'
        b'"content-digest": ' + content_digest(BODY).encode() + b"\n"
        b'"@signature-params": ' + signed.signature_input[4:].encode()
    )
    assert set(signed.headers()) == {
        "Content-Type",
        "Content-Digest",
        "Signature-Input",
        "Signature",
    }


def test_valid_request_verifies_and_returns_nonce_for_the_store() -> None:
    verified = verify_request(
        headers=_signed(),
        method="POST",
        authority=AUTHORITY,
        path=REQUEST_PATH,
        query="",
        body=BODY,
        now=NOW,
        resolve_key=_resolver,
    )
    assert verified.keyid == KEYID
    assert verified.nonce == NONCE
    assert verified.created == NOW
    assert verified.expires == NOW + 300
    assert len(verified.signature) == 64


def test_request_with_query_and_port_verifies() -> None:
    headers = _signed(authority="GW.example.net:8443", query="since=2026-11-01&x=%2F")
    _verify(headers, authority="gw.example.net:8443", query="since=2026-11-01&x=%2F")
    _refusal(BadSignatureError, "signature", headers, authority="gw.example.net:8443", query="")


def test_default_port_in_host_header_still_verifies() -> None:
    _verify(_signed(), authority="gw.example.net:443")


def test_header_names_are_case_insensitive() -> None:
    _verify([(k.upper(), v) for k, v in _signed().items()])


def test_other_signatures_are_ignored() -> None:
    headers = _signed()
    headers["Signature-Input"] += ', proxy=("@method");created=1'
    headers["Signature"] += ", proxy=:AAAA:"
    _verify(headers)


def test_parameter_order_and_whitespace_do_not_matter() -> None:
    reordered = tuple(sorted(DEFAULT_PARAMS))
    _verify(_custom(params=reordered))
    headers = _signed()
    headers["Signature-Input"] = headers["Signature-Input"].replace('" "', '"   "')
    _verify(headers)


@pytest.mark.parametrize("index", range(len(REQUEST_COMPONENTS)))
def test_each_missing_component_is_refused(index: int) -> None:
    missing = REQUEST_COMPONENTS[index]
    components = REQUEST_COMPONENTS[:index] + REQUEST_COMPONENTS[index + 1 :]
    message = _refusal(ComponentsError, "components", _custom(components))
    assert f"covered component {missing.serialize()} is missing" in message


def test_reordered_components_are_refused() -> None:
    components = (REQUEST_COMPONENTS[1], REQUEST_COMPONENTS[0], *REQUEST_COMPONENTS[2:])
    assert "in that order" in _refusal(ComponentsError, "components", _custom(components))


def test_extra_component_is_refused() -> None:
    components = (*REQUEST_COMPONENTS, Component("content-digest", (("key", "sha-256"),)))
    _refusal(ComponentsError, "components", _custom(components))


def test_component_with_unexpected_parameter_is_refused() -> None:
    headers = _signed()
    headers["Signature-Input"] = headers["Signature-Input"].replace('"@path"', '"@path";bs')
    _refusal(ComponentsError, "components", headers)


@pytest.mark.parametrize("name", ["content-type", "content-digest"])
def test_covered_header_absent_from_message_is_refused(name: str) -> None:
    headers = {k: v for k, v in _signed().items() if k.lower() != name}
    assert "missing from the message" in _refusal(ComponentsError, "components", headers)


@pytest.mark.parametrize("name", ["created", "expires", "nonce", "keyid", "alg", "tag"])
def test_each_missing_parameter_is_refused(name: str) -> None:
    message = _refusal(ParametersError, "parameters", _custom(params=_with_param(name, None)))
    assert f"required parameter {name!r} is missing" in message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("created", str(NOW)),
        ("created", True),  # ?1 is a Boolean, not the Integer 1
        ("expires", Token("soon")),
        ("nonce", Token("abc")),
        ("keyid", 7),
        ("alg", Token("ed25519")),
        ("tag", b"vpngw-regulator-v1"),
    ],
)
def test_mistyped_parameters_are_refused(name: str, value: BareItem) -> None:
    _refusal(ParametersError, "parameters", _custom(params=_with_param(name, value)))


def test_unknown_parameter_is_refused() -> None:
    params = (*DEFAULT_PARAMS, ("foo", "bar"))
    assert "unknown signature parameter 'foo'" in _refusal(
        ParametersError, "parameters", _custom(params=params)
    )


def test_repeated_parameter_is_refused() -> None:
    headers = _signed()
    headers["Signature-Input"] += f";created={NOW}"
    _refusal(MalformedError, "malformed", headers)


def test_wrong_tag_is_refused() -> None:
    params = _with_param("tag", "vpngw-provider-v1")
    assert 'tag="vpngw-regulator-v1"' in _refusal(TagError, "tag", _custom(params=params))


def test_wrong_alg_is_refused() -> None:
    _refusal(AlgError, "alg", _custom(params=_with_param("alg", "rsa-pss-sha512")))


def test_wrong_label_is_refused() -> None:
    message = _refusal(LabelError, "label", _custom(label="sig1"))
    assert "'sig1'" in message
    assert "use label 'reg'" in message


def test_label_only_in_signature_input_is_refused() -> None:
    headers = _signed()
    headers["Signature"] = headers["Signature"].replace("reg=", "sig1=")
    _refusal(LabelError, "label", headers)


@pytest.mark.parametrize("name", ["Signature-Input", "Signature"])
def test_missing_signature_headers_are_refused(name: str) -> None:
    headers = _signed()
    del headers[name]
    assert f"no {name} header" in _refusal(LabelError, "label", headers)


def test_unsigned_request_is_refused() -> None:
    _refusal(LabelError, "label", {"Content-Type": "application/json"})


def test_expired_request_is_refused() -> None:
    headers = _signed(expires=NOW + 30)
    _verify(headers, now=NOW + 29)
    assert "has passed" in _refusal(ExpiresError, "expires", headers, now=NOW + 30)
    _refusal(ExpiresError, "expires", headers, now=NOW + 31)


def test_created_too_far_in_the_future_is_refused() -> None:
    _verify(_signed(created=NOW + 60))
    message = _refusal(CreatedError, "created", _signed(created=NOW + 61))
    assert "61 s ahead of" in message
    assert "NTP" in message


def test_created_too_far_in_the_past_is_refused() -> None:
    _verify(_signed(created=NOW - 60, expires=NOW + 200))
    message = _refusal(CreatedError, "created", _signed(created=NOW - 61, expires=NOW + 200))
    assert "61 s behind" in message


def test_expires_too_long_after_created_is_refused() -> None:
    params = _with_param("expires", NOW + 301)
    assert "limit 300 s" in _refusal(ExpiresError, "expires", _custom(params=params))


def test_expires_not_after_created_is_refused() -> None:
    params = (("created", NOW + 50), *_with_param("created", None))
    params = tuple((k, NOW + 40 if k == "expires" else v) for k, v in params)
    assert "not after created" in _refusal(ExpiresError, "expires", _custom(params=params))


def test_configurable_limits() -> None:
    headers = _signed(created=NOW - 100, expires=NOW + 100)
    with pytest.raises(CreatedError):
        _verify(headers)
    verify_request(
        headers=headers,
        method="POST",
        authority=AUTHORITY,
        path=REQUEST_PATH,
        query="",
        body=BODY,
        now=NOW,
        resolve_key=_resolver,
        max_skew=120,
        max_validity=600,
    )


def test_unknown_or_revoked_keyid_is_refused() -> None:
    params = _with_param("keyid", "revoked-key")
    assert "unknown or revoked" in _refusal(KeyIdError, "keyid", _custom(params=params))


def test_non_ed25519_key_from_resolver_is_refused() -> None:
    with pytest.raises(KeyIdError, match="not an Ed25519 key"):
        verify_request(
            headers=_signed(),
            method="POST",
            authority=AUTHORITY,
            path=REQUEST_PATH,
            query="",
            body=BODY,
            now=NOW,
            resolve_key=lambda _: object(),  # type: ignore[arg-type,return-value]
        )


def test_wrong_key_is_refused() -> None:
    message = _refusal(BadSignatureError, "signature", _custom(key=OTHER_KEY))
    assert "does not verify with keyid" in message


@pytest.mark.parametrize("nonce", ["", "n" * 129])
def test_bad_nonce_is_refused(nonce: str) -> None:
    _refusal(NonceError, "nonce", _custom(params=_with_param("nonce", nonce)))


def test_caller_raises_nonce_error_on_replay() -> None:
    err = NonceError("nonce 'abc' was already used with keyid 'k'; send a fresh nonce")
    assert err.check == "nonce"
    assert str(err).startswith("nonce: ")
    assert isinstance(err, SignatureError)


def test_digest_mismatch_is_refused() -> None:
    headers = _signed()
    headers["Content-Digest"] = content_digest(b"{}")
    _refusal(DigestError, "digest", headers)


def test_body_changed_after_signing_is_refused() -> None:
    assert "does not match the received body" in _refusal(
        DigestError, "digest", _signed(), body=BODY + b" "
    )


def test_body_and_digest_changed_after_signing_is_refused() -> None:
    headers = _signed()
    headers["Content-Digest"] = content_digest(b"{}")
    _refusal(BadSignatureError, "signature", headers, body=b"{}")


@pytest.mark.parametrize(
    "changes",
    [
        {"method": "PUT"},
        {"path": "/regulator/v1/queries/x"},
        {"query": "a=1"},
        {"authority": "other.example.net"},
    ],
)
def test_tampered_request_line_is_refused(changes: dict[str, str]) -> None:
    _refusal(BadSignatureError, "signature", _signed(), **changes)


def test_tampered_content_type_is_refused() -> None:
    headers = _signed()
    headers["Content-Type"] = "application/json; charset=utf-8"
    _refusal(BadSignatureError, "signature", headers)


def test_short_signature_is_refused() -> None:
    headers = _signed()
    headers["Signature"] = "reg=:AAAA:"
    assert "64 bytes" in _refusal(BadSignatureError, "signature", headers)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Signature-Input", "reg=("),
        ("Signature-Input", "garbage here"),
        ("Signature-Input", 'reg="@method"'),
        ("Signature-Input", "reg=(@method)"),
        ("Signature-Input", 'reg=("@method"), reg=("@path")'),
        ("Signature", "reg=:not base64!:"),
        ("Signature", 'reg="AAAA"'),
        ("Signature", "reg=(:AAAA:)"),
        ("Signature", "reg=:AAAA:;x=1"),
        ("Signature", "reg=:AAAA:, reg=:AAAA:"),
        ("Signature", "\u00e9"),
    ],
)
def test_malformed_structured_fields_are_refused(field: str, value: str) -> None:
    headers = _signed()
    headers[field] = value
    _refusal(MalformedError, "malformed", headers)


def test_read_keyid_is_unverified_lookup_helper() -> None:
    assert read_keyid(_signed()) == KEYID
    with pytest.raises(LabelError):
        read_keyid({})


def test_sign_request_refuses_arguments_the_server_would_refuse() -> None:
    with pytest.raises(ValueError, match="expires"):
        sign_request(
            private_key=KEY,
            keyid=KEYID,
            authority=AUTHORITY,
            body=BODY,
            created=NOW,
            nonce=NONCE,
            expires=NOW + 301,
        )
    with pytest.raises(ValueError, match="nonce"):
        sign_request(
            private_key=KEY, keyid=KEYID, authority=AUTHORITY, body=BODY, created=NOW, nonce=""
        )


def test_every_refusal_names_its_check() -> None:
    checks = {
        MalformedError: "malformed",
        LabelError: "label",
        ComponentsError: "components",
        ParametersError: "parameters",
        TagError: "tag",
        AlgError: "alg",
        CreatedError: "created",
        ExpiresError: "expires",
        KeyIdError: "keyid",
        NonceError: "nonce",
        DigestError: "digest",
        BadSignatureError: "signature",
    }
    for cls, check in checks.items():
        err = cls("what went wrong; what to fix")
        assert isinstance(err, SignatureError)
        assert err.check == check
        assert str(err) == f"{check}: what went wrong; what to fix"
        assert err.reason == "what went wrong; what to fix"


# ----------------------------------------------------------------------------- responses

RESPONSE_BODY = b'{"records": [], "truncated": false}'


def _request_signature() -> bytes:
    return sign_request(
        private_key=KEY, keyid=KEYID, authority=AUTHORITY, body=BODY, created=NOW, nonce=NONCE
    ).signature_bytes


def _signed_response(status: int = 200, body: bytes = RESPONSE_BODY) -> dict[str, str]:
    return sign_response(
        private_key=GW_KEY,
        keyid=GW_KEYID,
        status=status,
        body=body,
        created=NOW,
        request_signature=_request_signature(),
    ).headers()


def _verify_response(
    headers: dict[str, str],
    *,
    status: int = 200,
    body: bytes = RESPONSE_BODY,
    request_signature: bytes | None = None,
    now: float = NOW,
) -> None:
    verify_response(
        headers=headers,
        status=status,
        body=body,
        now=now,
        resolve_key=_resolver,
        request_signature=request_signature or _request_signature(),
    )


def test_sign_response_emits_the_profile_headers_byte_for_byte() -> None:
    request_signature = _request_signature()
    signed = sign_response(
        private_key=GW_KEY,
        keyid=GW_KEYID,
        status=200,
        body=RESPONSE_BODY,
        created=NOW,
        request_signature=request_signature,
    )
    assert signed.signature_input == (
        'gw=("@status" "content-type" "content-digest" "signature";req;key="reg")'
        f';created={NOW};keyid="{GW_KEYID}";alg="ed25519";tag="vpngw-provider-v1"'
    )
    b64 = base64.b64encode(request_signature).decode()
    assert signed.signature_base == (
        b'"@status": 200\n'
        b'"content-type": application/json\n'
        b'"content-digest": ' + content_digest(RESPONSE_BODY).encode() + b"\n"
        b'"signature";req;key="reg": :' + b64.encode() + b":\n"
        b'"@signature-params": ' + signed.signature_input[3:].encode()
    )
    assert signed.signature.startswith("gw=:")


def test_valid_response_verifies() -> None:
    verified = verify_response(
        headers=_signed_response(),
        status=200,
        body=RESPONSE_BODY,
        now=NOW + 5,
        resolve_key=_resolver,
        request_signature=_request_signature(),
    )
    assert verified.keyid == GW_KEYID
    assert verified.created == NOW


def test_response_to_another_request_is_refused() -> None:
    other = sign_request(
        private_key=KEY, keyid=KEYID, authority=AUTHORITY, body=BODY, created=NOW, nonce="other"
    ).signature_bytes
    with pytest.raises(BadSignatureError):
        _verify_response(_signed_response(), request_signature=other)


def test_response_with_changed_status_is_refused() -> None:
    with pytest.raises(BadSignatureError):
        _verify_response(_signed_response(), status=500)


def test_response_with_changed_body_is_refused() -> None:
    with pytest.raises(DigestError):
        _verify_response(_signed_response(), body=RESPONSE_BODY + b" ")


def test_response_created_skew_is_refused() -> None:
    with pytest.raises(CreatedError):
        _verify_response(_signed_response(), now=NOW + 61)


def test_response_profile_deviations_are_refused() -> None:
    # A request-labelled signature is not a response signature.
    with pytest.raises(LabelError):
        _verify_response(_signed())
    headers = _signed_response()
    headers["Signature-Input"] = headers["Signature-Input"].replace(RESPONSE_TAG, "x")
    with pytest.raises(TagError):
        _verify_response(headers)
    headers = _signed_response()
    headers["Signature-Input"] += f";expires={NOW + 10}"
    with pytest.raises(ParametersError, match="not allowed"):
        _verify_response(headers)
    headers = _signed_response()
    headers["Signature-Input"] = headers["Signature-Input"].replace(';req;key="reg"', "")
    with pytest.raises(ComponentsError):
        _verify_response(headers)


def test_response_components_constant() -> None:
    assert [c.serialize() for c in RESPONSE_COMPONENTS] == [
        '"@status"',
        '"content-type"',
        '"content-digest"',
        '"signature";req;key="reg"',
    ]


def test_archived_response_verifies_offline_without_a_clock() -> None:
    verify_response(
        headers=_signed_response(),
        status=200,
        body=RESPONSE_BODY,
        now=None,
        resolve_key=_resolver,
        request_signature=_request_signature(),
    )
    with pytest.raises(BadSignatureError):
        _verify_response(_signed_response(), status=201, now=NOW)


# ----------------------------------------------------------------------------- degenerate keys

IDENTITY_KEY = Ed25519PublicKey.from_public_bytes(bytes([1]) + bytes(31))
ZERO_KEY = Ed25519PublicKey.from_public_bytes(bytes(32))
FORGED = bytes([1]) + bytes(63)  # R = identity, S = 0: no private key involved


class _Forger:
    """Stands in for a private key: "signs" every base with the same forged bytes."""

    def sign(self, data: bytes) -> bytes:
        return FORGED


@pytest.mark.parametrize("public", [IDENTITY_KEY, ZERO_KEY], ids=["identity", "all-zero"])
def test_a_forged_request_under_a_degenerate_registered_key_is_refused(
    public: Ed25519PublicKey,
) -> None:
    # Several nonces: under the all-zero key the forgery verifies for about 1 in 8 bases.
    for n in range(16):
        headers = sign_request(
            private_key=_Forger(), keyid=KEYID, authority=AUTHORITY, body=BODY,  # type: ignore[arg-type]
            created=NOW, nonce=f"forged-{n}",
        ).headers()
        with pytest.raises(KeyIdError, match="small order") as info:
            verify_request(headers=headers, method="POST", authority=AUTHORITY,
                           path=REQUEST_PATH, query="", body=BODY, now=NOW,
                           resolve_key=lambda _keyid, k=public: k)
        assert "register a new key" in str(info.value)


def test_a_signature_with_a_small_order_r_or_a_malleated_s_is_refused() -> None:
    headers = sign_request(
        private_key=_Forger(), keyid=KEYID, authority=AUTHORITY, body=BODY,  # type: ignore[arg-type]
        created=NOW, nonce=NONCE,
    ).headers()
    assert "R is a point of small order" in _refusal(BadSignatureError, "signature", headers)

    genuine = sign_request(private_key=KEY, keyid=KEYID, authority=AUTHORITY, body=BODY,
                           created=NOW, nonce=NONCE)
    s = int.from_bytes(genuine.signature_bytes[32:], "little")
    order = 2**252 + 27742317777372353535851937790883648493
    malleated = genuine.signature_bytes[:32] + (s + order).to_bytes(32, "little")
    headers = genuine.headers()
    headers["Signature"] = serialize_dictionary({"reg": Item(malleated)})
    assert "S is not below the group order" in _refusal(BadSignatureError, "signature", headers)


def test_a_forged_response_under_a_degenerate_pinned_key_is_refused() -> None:
    headers = sign_response(
        private_key=_Forger(), keyid=GW_KEYID, status=200, body=RESPONSE_BODY,  # type: ignore[arg-type]
        created=NOW, request_signature=_request_signature(),
    ).headers()
    with pytest.raises(KeyIdError, match="small order"):
        verify_response(headers=headers, status=200, body=RESPONSE_BODY, now=NOW,
                        resolve_key=lambda _keyid: IDENTITY_KEY,
                        request_signature=_request_signature())
    with pytest.raises(BadSignatureError, match="R is a point of small order"):
        _verify_response(headers)
