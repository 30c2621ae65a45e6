"""The fast canonical-JSON check (first_noncanonical) agrees with parse_canonical leaf by leaf."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.canonical import (
    CanonicalError,
    canonical_json,
    first_noncanonical,
    parse_canonical,
)

GOOD = [canonical_json({"v": 1, "type": "t", "n": i, "s": f"x{i} ü ☃", "a": ["1", 2]})
        for i in range(6)]


def nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


def reference(leaves: list[bytes]) -> int | None:
    for i, leaf in enumerate(leaves):
        try:
            parse_canonical(leaf)
        except CanonicalError:
            return i
    return None


def fast(leaves: list[bytes]) -> int | None:
    found = first_noncanonical(leaves)
    return None if found is None else found[0]


BAD = {
    "unsorted keys": b'{"b":1,"a":2}',
    "whitespace": b'{"a": 1}',
    "duplicate key": b'{"a":1,"a":1}',
    "float": b'{"a":1.5}',
    "exponent": b'{"a":1e3}',
    "negative zero": b'{"a":-0}',
    "true": b'{"a":true}',
    "null": b'{"a":null}',
    "big integer": b'{"a":9007199254740992}',
    "escaped letter": b'{"a":"\\u0041"}',
    "escaped slash": b'{"a":"\\/"}',
    "lone surrogate": b'{"a":"\\ud800"}',
    "array on top": b'[1]',
    "two values": b'{"a":1},{"b":2}',
    "raw newline": b'{"a":\n1}',
    "invalid utf-8": b'{"a":"\xff"}',
    "NaN": b'{"a":NaN}',
    "too deep": b'{"a":' + b"[" * 33 + b"]" * 33 + b"}",
    "leading space": b' {"a":1}',
    "trailing comma": b'{"a":1,}',
    "empty": b"",
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("position", [0, 3, 6])
def test_each_kind_of_bad_leaf_is_found_where_it_is(name: str, position: int) -> None:
    leaves = [*GOOD[:position], BAD[name], *GOOD[position:]]
    assert reference(leaves) == position
    assert fast(leaves) == position


def test_canonical_leaves_pass_even_with_lookalike_strings() -> None:
    leaves = [*GOOD, canonical_json({"s": "true false null", "d": "12345678901234567890",
                                     "x": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{"}),
              canonical_json({"n": 9007199254740991, "m": -9007199254740991}),
              canonical_json({"a": nested(31)})]
    assert reference(leaves) is None
    assert fast(leaves) is None


def test_leaves_that_only_line_up_when_joined_are_caught() -> None:
    """A leaf holding two values and two leaves holding halves of one keep the count."""
    leaves = [b'{"a":1},{"b":2}', b'{"c":[1', b'2]}']
    assert reference(leaves) == 0
    assert fast(leaves) == 0


json_values = st.recursive(
    st.integers(-(2**60), 2**60) | st.text(max_size=8) | st.booleans() | st.none()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=4), json_values, max_size=4), max_size=6),
       st.booleans())
def test_agrees_with_parse_canonical(docs: list[dict[str, object]], pretty: bool) -> None:
    encode = (lambda d: json.dumps(d, sort_keys=False).encode()) if pretty else (
        lambda d: json.dumps(d, ensure_ascii=False, sort_keys=True,
                             separators=(",", ":")).encode("utf-8", "surrogatepass"))
    leaves = [encode(d) for d in docs]
    assert fast(leaves) == reference(leaves)


def test_sequencer_batch_decoding_keeps_leaf_boundaries() -> None:
    from gateway.audit.log import _parse_events

    assert _parse_events(GOOD) == [json.loads(leaf) for leaf in GOOD]
    # leaves that are not one canonical object each: decoded one by one, or refused
    assert _parse_events([b'{"a":\n1}', b'{"b":2}']) == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError):
        _parse_events([b'{"a":1},{"b":2}', b'{"c":[1', b'2]}'])
