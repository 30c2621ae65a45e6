"""Tests for gateway.audit.canonical: canonical JSON leaves and RFC 3339 UTC times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    CanonicalError,
    canonical_json,
    format_time,
    parse_canonical,
    parse_time,
)

# --- encoding ------------------------------------------------------------------------


def test_known_encoding() -> None:
    doc = {"z": 1, "a": [3, "x", {"é": "ü", "b": -2}], "m": 'tab\there "q" \\ \u2028'}
    assert (
        canonical_json(doc)
        == ('{"a":[3,"x",{"b":-2,"é":"ü"}],"m":"tab\\there \\"q\\" \\\\ \u2028","z":1}').encode()
    )


def test_non_ascii_is_raw_utf8() -> None:
    assert canonical_json({"k": "Grüße 日本 🙂"}) == '{"k":"Grüße 日本 🙂"}'.encode()
    assert b"\\u" not in canonical_json({"k": "Grüße 日本 🙂"})


def test_keys_sorted_by_code_point() -> None:
    doc = {"b": 0, "B": 0, "a": 0, "é": 0, "\U0001f600": 0, "\uffff": 0, "": 0}
    assert list(json.loads(canonical_json(doc))) == ["", "B", "a", "b", "é", "\uffff", "\U0001f600"]


def test_control_characters_escaped() -> None:
    assert canonical_json({"k": "\x00\x1f\n"}) == b'{"k":"\\u0000\\u001f\\n"}'


def test_integer_range() -> None:
    assert canonical_json({"n": MAX_SAFE_INTEGER}) == b'{"n":9007199254740991}'
    assert canonical_json({"n": -MAX_SAFE_INTEGER}) == b'{"n":-9007199254740991}'
    for bad in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**400):
        with pytest.raises(CanonicalError, match="string"):
            canonical_json({"n": bad})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"f": 1.0}, "float"),
        ({"f": float("nan")}, "float"),
        ({"b": True}, "True"),
        ({"b": False}, "False"),
        ({"n": None}, "None"),
        ({"t": (1, 2)}, "tuple"),
        ({"s": {1, 2}}, "set"),
        ({"b": b"bytes"}, "bytes"),
        ({1: "int key"}, "key"),
        ({("a",): "tuple key"}, "key"),
        ({"s": "\ud800"}, "surrogate"),
        ({"\udfff": "x"}, "surrogate"),
        ({"l": [1, [2, [3.5]]]}, r"\$\.l\[1\]\[1\]\[0\]"),
        ({"d": datetime(2024, 1, 1, tzinfo=UTC)}, "datetime"),
    ],
)
def test_rejected_values(value: dict[Any, Any], message: str) -> None:
    with pytest.raises(CanonicalError, match=message):
        canonical_json(value)


def test_subclasses_rejected() -> None:
    class MyStr(str):
        pass

    class MyDict(dict[str, int]):
        pass

    with pytest.raises(CanonicalError):
        canonical_json({"s": MyStr("x")})
    with pytest.raises(CanonicalError):
        canonical_json(MyDict(a=1))


def test_depth_limit() -> None:
    deep: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    canonical_json({"d": deep[0]})
    with pytest.raises(CanonicalError, match="deeper"):
        canonical_json({"d": [deep]})


def test_cycles_rejected() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(CanonicalError):
        canonical_json({"c": cyclic})


def test_top_level_may_be_any_allowed_type_for_encoding() -> None:
    assert canonical_json([1, "a"]) == b'[1,"a"]'
    assert canonical_json("s") == b'"s"'


# --- parsing -------------------------------------------------------------------------


def test_parse_round_trip() -> None:
    doc = {"v": 1, "type": "peer.connected", "ts": "2024-05-06T07:08:09Z", "tags": ["ä", "b"]}
    data = canonical_json(doc)
    assert parse_canonical(data) == doc
    assert parse_canonical(bytearray(data)) == doc


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"b":2} ',
        b' {"a":1}',
        b'{"a": 1}',
        b'{"b":1,"a":2}',
        b'{"a":1,"a":1}',
        b'{"a":"\\u00e9"}',
        b'{"a":"\\/"}',
        b'{"a":1.0}',
        b'{"a":1e3}',
        b'{"a":-0}',
        b'{"a":01}',
        b'{"a":true}',
        b'{"a":null}',
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b"[1,2]",
        b'"str"',
        b"",
        b"{",
        b"\xef\xbb\xbf{}",
        b'{"a":"\xff"}',
        b'{"a":"\xed\xa0\x80"}',
        b'{"a":"\\ud800"}',
        b'{"a":9007199254740992}',
        b'{"a":' + b"1" * 5000 + b"}",
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_parse_rejects_non_canonical(data: bytes) -> None:
    with pytest.raises(CanonicalError):
        parse_canonical(data)


def test_parse_rejects_non_bytes() -> None:
    with pytest.raises(CanonicalError, match="bytes"):
        parse_canonical('{"a":1}')  # type: ignore[arg-type]


def test_parse_empty_object() -> None:
    assert parse_canonical(b"{}") == {}


json_values = st.recursive(
    st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(exclude_categories=["Cs"])), children, max_size=4
        )
    ),
    max_leaves=20,
)
json_objects = st.dictionaries(
    st.text(alphabet=st.characters(exclude_categories=["Cs"])), json_values, max_size=6
)


@settings(max_examples=60, deadline=None)
@given(json_objects)
def test_canonical_round_trip(doc: dict[str, Any]) -> None:
    data = canonical_json(doc)
    assert parse_canonical(data) == doc
    # It is ordinary JSON, too.
    assert json.loads(data) == doc
    # Equal documents have equal bytes however they were built.
    assert canonical_json(dict(reversed(list(doc.items())))) == data


@settings(max_examples=40, deadline=None)
@given(json_objects)
def test_pretty_printed_variants_rejected(doc: dict[str, Any]) -> None:
    data = canonical_json(doc)
    for variant in (
        json.dumps(doc, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps(doc, ensure_ascii=False, sort_keys=True, indent=1).encode(),
        json.dumps(doc, ensure_ascii=False, sort_keys=True).encode(),
    ):
        if variant != data:
            with pytest.raises(CanonicalError):
                parse_canonical(variant)


# --- times -----------------------------------------------------------------------------


def test_format_time() -> None:
    assert format_time(datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)) == (
        "2024-02-29T23:59:59Z"
    )
    plus2 = timezone(timedelta(hours=2))
    assert format_time(datetime(2024, 1, 1, 1, 30, tzinfo=plus2)) == "2023-12-31T23:30:00Z"
    assert format_time(datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0005-01-02T03:04:05Z"


def test_format_time_rejects_naive() -> None:
    with pytest.raises(CanonicalError, match="naive"):
        format_time(datetime(2024, 1, 1))
    with pytest.raises(CanonicalError, match="datetime"):
        format_time("2024-01-01T00:00:00Z")  # type: ignore[arg-type]


def test_parse_time() -> None:
    parsed = parse_time("2024-02-29T23:59:59Z")
    assert parsed == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "2024-02-29T23:59:59",
        "2024-02-29T23:59:59z",
        "2024-02-29t23:59:59Z",
        "2024-02-29 23:59:59Z",
        "2024-02-29T23:59:59.5Z",
        "2024-02-29T23:59:59+00:00",
        "2024-02-29T23:59:60Z",
        "2023-02-29T00:00:00Z",
        "2024-13-01T00:00:00Z",
        "2024-2-29T23:59:59Z",
        "２０２４-02-29T23:59:59Z",
        " 2024-02-29T23:59:59Z",
        "2024-02-29T23:59:59Z\n",
        "",
    ],
)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(CanonicalError):
        parse_time(text)


@settings(max_examples=150, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_time_round_trip(when: datetime) -> None:
    text = format_time(when)
    assert parse_time(text) == when.replace(microsecond=0)
    assert format_time(parse_time(text)) == text
    assert canonical_json({"ts": text}) == f'{{"ts":"{text}"}}'.encode()
