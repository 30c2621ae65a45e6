"""canonical_many (orjson for plain objects) writes exactly canonical_json's bytes, and
refuses exactly what canonical_json refuses, with the same message.

The reference is the slow encoder itself, object by object: any value on which the two
differ, in bytes or in the error, fails here. Values mix what the log allows with
everything it refuses: floats, bools, None, tuples, bytes, subclasses of str, int, dict
and list, non-str keys, integers around +-(2**53 - 1), lone surrogates, deep nesting,
shared and cyclic structure.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.audit.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    CanonicalError,
    canonical_json,
    canonical_many,
)


class Text(str):
    pass


class Number(int):
    pass


class Mapping(dict):  # type: ignore[type-arg]
    pass


class Items(list):  # type: ignore[type-arg]
    pass


def outcome(encode: Any, objects: list[Any]) -> list[bytes] | str:
    try:
        return list(encode(objects))
    except CanonicalError as exc:
        return f"CanonicalError: {exc}"


def reference(objects: list[Any]) -> list[bytes]:
    return [canonical_json(obj) for obj in objects]


edge = MAX_SAFE_INTEGER
scalars = (st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=6)
           | st.sampled_from([edge, -edge, edge + 1, -edge - 1, 2**64, "\ud800", "a\udfff",
                              "\x00", "\x1f", '"', "\\", "\u2028", "é", "😀", "\uffff"]))
odd = (st.booleans() | st.none() | st.floats(allow_nan=False) | st.binary(max_size=2)
       | st.builds(Text, st.text(max_size=2)) | st.builds(Number, st.integers(0, 9)))
keys = st.text(max_size=3) | st.sampled_from(["\ud800", "", "é", "\U0010ffff"])
odd_keys = st.integers(0, 3) | st.builds(Text, st.text(max_size=2)) | st.none()


def containers(inner: st.SearchStrategy[Any], *, strange: bool) -> st.SearchStrategy[Any]:
    plain = (st.lists(inner, max_size=3)
             | st.dictionaries(keys, inner, max_size=3))
    if not strange:
        return plain
    return (plain | st.tuples(inner, inner) | st.builds(Items, st.lists(inner, max_size=2))
            | st.builds(Mapping, st.dictionaries(keys, inner, max_size=2))
            | st.dictionaries(odd_keys, inner, min_size=1, max_size=2))


plain_values = st.recursive(scalars, lambda inner: containers(inner, strange=False),
                            max_leaves=12)
any_values = st.recursive(scalars | odd, lambda inner: containers(inner, strange=True),
                          max_leaves=12)
plain_objects = st.dictionaries(keys, plain_values, max_size=6)
any_objects = st.dictionaries(keys | odd_keys, any_values, max_size=6) | any_values


@settings(max_examples=500, deadline=None)
@given(st.lists(plain_objects, max_size=6))
@example([{"b": 1, "a": [edge, -edge], "é": "😀", "\x7f": {"z": "", "": []}}])
def test_plain_objects_encode_byte_for_byte(objects: list[dict[str, Any]]) -> None:
    assert outcome(canonical_many, objects) == outcome(reference, objects)


@settings(max_examples=800, deadline=None)
@given(st.lists(any_objects, max_size=5))
@example([{"n": edge + 1}])
@example([{"a": 1}, {"s": "\ud800"}])
@example([{1: "a"}])
@example([{"t": (1, 2)}])
@example([{"k": Text("x")}])
@example([{Text("k"): "x"}])
@example([{"f": 1.0}, {"a": 1}])
@example([["a"]])
def test_anything_encodes_or_fails_as_canonical_json(objects: list[Any]) -> None:
    assert outcome(canonical_many, objects) == outcome(reference, objects)


def nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"d": value}
    return {"top": value}


def test_depth_limit_is_the_same() -> None:
    for depth in range(MAX_DEPTH - 2, MAX_DEPTH + 3):
        doc = nested(depth)
        assert outcome(canonical_many, [doc]) == outcome(reference, [doc]), depth
        listed: dict[str, Any] = {"top": []}
        inner = listed["top"]
        for _ in range(depth):
            inner.append([])
            inner = inner[0]
        assert outcome(canonical_many, [listed]) == outcome(reference, [listed]), depth


def test_shared_and_cyclic_structure() -> None:
    shared: Any = ["x"]
    for _ in range(40):  # 2**40 paths to one list: refused by depth, never walked whole
        shared = [shared, shared]
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    for doc in ({"s": shared}, cyclic):
        assert outcome(canonical_many, [doc]) == outcome(reference, [doc])
        assert str(outcome(canonical_many, [doc])).startswith("CanonicalError")
