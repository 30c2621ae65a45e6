"""RFC 8941 structured field parsing and serialization (the subset used by httpsig)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.regulator.structured import (
    InnerList,
    Item,
    StructuredFieldError,
    Token,
    parse_dictionary,
    parse_item,
    parse_list,
    serialize_bare_item,
    serialize_dictionary,
    serialize_item,
    serialize_key,
    serialize_list,
)

SIGNATURE_INPUT = (
    'reg=("@method" "@authority" "@path" "@query" "content-type" "content-digest")'
    ';created=1700000000;expires=1700000300;nonce="n-1";keyid="k1";alg="ed25519"'
    ';tag="vpngw-regulator-v1"'
)


def test_signature_input_dictionary_parses_to_inner_list_with_ordered_params() -> None:
    parsed = parse_dictionary(SIGNATURE_INPUT)
    assert list(parsed) == ["reg"]
    member = parsed["reg"]
    assert isinstance(member, InnerList)
    assert [i.value for i in member.items] == [
        "@method",
        "@authority",
        "@path",
        "@query",
        "content-type",
        "content-digest",
    ]
    assert member.params == (
        ("created", 1700000000),
        ("expires", 1700000300),
        ("nonce", "n-1"),
        ("keyid", "k1"),
        ("alg", "ed25519"),
        ("tag", "vpngw-regulator-v1"),
    )
    assert serialize_dictionary(parsed) == SIGNATURE_INPUT


def test_component_with_boolean_and_string_params() -> None:
    member = parse_dictionary('gw=("@status" "signature";req;key="reg")')["gw"]
    assert isinstance(member, InnerList)
    assert member.items[1] == Item("signature", (("req", True), ("key", "reg")))
    assert serialize_dictionary({"gw": member}) == 'gw=("@status" "signature";req;key="reg")'


def test_byte_sequence_round_trip() -> None:
    parsed = parse_dictionary("sig=:AAECAw==:, other=:/w==:")
    assert parsed == {"sig": Item(b"\x00\x01\x02\x03"), "other": Item(b"\xff")}
    assert serialize_dictionary(parsed) == "sig=:AAECAw==:, other=:/w==:"


def test_byte_sequence_without_padding_is_accepted() -> None:
    # RFC 8941 4.2.7: parsers SHOULD NOT fail when "=" padding is absent.
    assert parse_item(":AAECAw:") == Item(b"\x00\x01\x02\x03")


def test_bare_item_types() -> None:
    assert parse_item("42").value == 42
    assert parse_item("-7").value == -7
    assert parse_item("4.5").value == Decimal("4.5")
    assert parse_item("?1").value is True
    assert parse_item("?0").value is False
    assert parse_item("foo/bar:baz").value == Token("foo/bar:baz")
    assert parse_item('"a \\"q\\" \\\\ b"').value == 'a "q" \\ b'
    assert parse_item("*tok").value == Token("*tok")


def test_dictionary_bare_key_is_true_with_params() -> None:
    parsed = parse_dictionary("a, b;x=1, c=?0")
    assert parsed == {"a": Item(True), "b": Item(True, (("x", 1),)), "c": Item(False)}
    assert serialize_dictionary(parsed) == "a, b;x=1, c=?0"


def test_whitespace_handling() -> None:
    assert parse_dictionary("  a=1 ,\tb=2  ") == {"a": Item(1), "b": Item(2)}
    assert parse_dictionary("a=(  1   2 )") == {"a": InnerList((Item(1), Item(2)))}
    assert parse_dictionary("a=1;  x") == {"a": Item(1, (("x", True),))}


def test_field_lines_are_combined() -> None:
    assert parse_dictionary(["a=1", "b=2"]) == {"a": Item(1), "b": Item(2)}


def test_empty_dictionary_and_list() -> None:
    assert parse_dictionary("") == {}
    assert parse_list("") == []


def test_list_round_trip() -> None:
    text = '"a";x=1, (b "c"), :AQ==:'
    parsed = parse_list(text)
    assert parsed == [
        Item("a", (("x", 1),)),
        InnerList((Item(Token("b")), Item("c"))),
        Item(b"\x01"),
    ]
    assert serialize_list(parsed) == text


def test_duplicate_keys_overwrite_by_default_and_can_be_refused() -> None:
    # RFC 8941 4.2.2: a repeated key overwrites the earlier value, keeping its position.
    assert parse_dictionary("a=1, b=2, a=3") == {"a": Item(3), "b": Item(2)}
    with pytest.raises(StructuredFieldError, match="duplicate dictionary key"):
        parse_dictionary("a=1, b=2, a=3", reject_duplicates=True)
    with pytest.raises(StructuredFieldError, match="duplicate parameter"):
        parse_dictionary("a=1;x=1;x=2", reject_duplicates=True)
    assert parse_dictionary("a=1;x=1;x=2") == {"a": Item(1, (("x", 2),))}


def test_number_limits() -> None:
    assert parse_item("999999999999999").value == 999_999_999_999_999
    assert parse_item("-999999999999999").value == -999_999_999_999_999
    assert parse_item("123456789012.123").value == Decimal("123456789012.123")


@pytest.mark.parametrize(
    "text",
    [
        "a=1,",  # trailing comma
        "a=1,,b=2",  # empty member
        "A=1",  # uppercase key
        "1a=1",  # key must start with lcalpha or *
        "a=1 b=2",  # missing comma
        "a=1;",  # parameter without key
        "a=1;X=2",  # uppercase parameter key
        'a="unterminated',
        'a="bad \\x escape"',
        'a="tab\tinside"',
        "a=(1 2",  # unterminated inner list
        "a=(1 2)x",  # junk after inner list
        "a=(1,2)",  # comma inside inner list
        "a=:AAECAw==",  # unterminated byte sequence
        "a=:AA$C:",  # not base64
        "a=:AB==:",  # non-canonical base64 (non-zero pad bits)
        "a=:A:",  # impossible base64 length
        "a=:AA=A:",  # padding in the middle
        "a=?2",  # bad boolean
        "a=?",
        "a=1234567890123456",  # 16-digit integer
        "a=1234567890123.1",  # 13-digit decimal integer part
        "a=1.2345",  # 4 fractional digits
        "a=1.",  # decimal without fraction
        "a=-",  # sign without digits
        "a=@1",  # not an item
        "a=1 ;x",  # space before parameter
        "\ta=1",  # leading tab is not SP
        "a=é",  # non-ASCII
        "a=1\n",
    ],
)
def test_malformed_dictionaries_are_refused(text: str) -> None:
    with pytest.raises(StructuredFieldError):
        parse_dictionary(text)


@pytest.mark.parametrize("text", ["", " ", "1 2", '"a" junk', "(1", "?1;"])
def test_malformed_items_are_refused(text: str) -> None:
    with pytest.raises(StructuredFieldError):
        parse_item(text)


def test_serialize_bare_items() -> None:
    assert serialize_bare_item(True) == "?1"
    assert serialize_bare_item(False) == "?0"
    assert serialize_bare_item(0) == "0"
    assert serialize_bare_item(-12) == "-12"
    assert serialize_bare_item('q"b\\') == '"q\\"b\\\\"'
    assert serialize_bare_item(Token("text/plain")) == "text/plain"
    assert serialize_bare_item(b"") == "::"
    assert serialize_bare_item(Decimal("1.5")) == "1.5"
    assert serialize_bare_item(Decimal("2")) == "2.0"
    assert serialize_bare_item(Decimal("1.0005")) == "1.0"  # round half to even
    assert serialize_bare_item(Decimal("1.0015")) == "1.002"
    assert serialize_bare_item(Decimal("-0.25")) == "-0.25"


@pytest.mark.parametrize(
    "value",
    [
        1_000_000_000_000_000,
        -1_000_000_000_000_000,
        "line\nbreak",
        "caf\u00e9",
        Decimal("1000000000000"),
        Decimal("NaN"),
    ],
)
def test_unserializable_values_are_refused(value: int | str | Decimal) -> None:
    with pytest.raises(StructuredFieldError):
        serialize_bare_item(value)


def test_invalid_keys_and_tokens_are_refused() -> None:
    with pytest.raises(StructuredFieldError):
        serialize_key("Upper")
    with pytest.raises(StructuredFieldError):
        serialize_dictionary({"": Item(1)})
    with pytest.raises(StructuredFieldError):
        Token("1abc")
    with pytest.raises(StructuredFieldError):
        Token("a b")


def test_serialize_item_with_params() -> None:
    item = Item("signature", (("req", True), ("key", "reg")))
    assert serialize_item(item) == '"signature";req;key="reg"'
    assert serialize_item(Item(1, (("flag", False),))) == "1;flag=?0"
