"""first_noncanonical (orjson re-encoding plus byte screens) decides exactly as parse_canonical.

The fast path may only say "canonical" where parse_canonical does; these tests look for
any input where the two disagree, from random values written in many ways and from
adversarial edits of canonical bytes (number forms, escapes, key order, duplicate keys,
unicode, nesting), and check the one fact the fast path rests on exhaustively: orjson
escapes every code point as canonical_json does.
"""

from __future__ import annotations

import json
import sys

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.audit.canonical import (
    MAX_DEPTH,
    CanonicalError,
    canonical_json,
    first_noncanonical,
    parse_canonical,
)


def reference(leaves: list[bytes]) -> tuple[int, str] | None:
    for i, leaf in enumerate(leaves):
        try:
            parse_canonical(leaf)
        except CanonicalError as exc:
            return i, str(exc)
    return None


def test_orjson_escapes_every_code_point_as_canonical_json() -> None:
    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    assert orjson.dumps(chars) == canonical_json(chars)


def test_orjson_sorts_keys_by_code_point_across_planes() -> None:
    keys = ["", " ", "!", "a", "a ", "a!", "a\x7f", "ab", "\x7f", "\x80", "é", "\u2028",
            "\ue000", "\uffff", "\U00010000", "\U0001f600", "\U0010ffff", "\x00", "\x1f"]
    doc = {k: i for i, k in enumerate(keys)}
    assert orjson.dumps(doc, option=orjson.OPT_SORT_KEYS) == canonical_json(doc)


def test_integer_limits_match() -> None:
    edge = 2**53 - 1
    for n in (edge, -edge, edge + 1, -edge - 1, 2**63, 2**64):
        leaf = b'{"n":' + str(n).encode() + b"}"
        assert first_noncanonical([leaf]) == reference([leaf]), n


# --- random values, written in many ways -----------------------------------------------------

scalars = (st.integers(-(2**54), 2**54) | st.integers(-(2**53) + 1, 2**53 - 1)
           | st.text(max_size=6) | st.sampled_from(["\x00", "\x1f", '"', "\\", "/", "\x7f",
                                                   "\u2028", "é", "😀", "\ue000", "\uffff"])
           | st.booleans() | st.none() | st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10)
documents = st.dictionaries(st.text(max_size=4), values, max_size=5)


def writings(doc: dict[str, object]) -> list[bytes]:
    out = [
        json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        .encode("utf-8", "surrogatepass"),
        json.dumps(doc, ensure_ascii=True, sort_keys=True, separators=(",", ":")).encode(),
        json.dumps(doc, ensure_ascii=False, sort_keys=False, separators=(",", ":"))
        .encode("utf-8", "surrogatepass"),
        json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8", "surrogatepass"),
    ]
    try:
        out.append(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS))
        out.append(orjson.dumps(doc))
    except TypeError:  # integers past 64 bits
        pass
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(documents, min_size=1, max_size=5))
def test_random_documents_in_many_writings(docs: list[dict[str, object]]) -> None:
    leaves = [leaf for doc in docs for leaf in writings(doc)]
    assert first_noncanonical(leaves) == reference(leaves)
    for leaf in leaves:
        assert first_noncanonical([leaf]) == reference([leaf])


# --- adversarial edits of canonical bytes ----------------------------------------------------

canonical_scalars = (st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=6)
                     | st.sampled_from(["\x00", "\n", '"', "\\", "/", "\x7f", "\u2028", "😀"]))
canonical_values = st.recursive(
    canonical_scalars, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=10)
canonical_docs = st.dictionaries(st.text(max_size=4), canonical_values, min_size=1, max_size=5)

# Same value or a near miss, other bytes: each must be refused exactly as parse_canonical does.
EDITS = [
    (b":1", b":1.0"), (b":1", b":1e0"), (b":1", b":1E0"), (b":0", b":-0"), (b":0", b":00"),
    (b":1", b":01"), (b":1", b":+1"), (b":1", b":true"), (b":1", b":null"), (b":1", b":false"),
    (b":1", b": 1"), (b",", b", "), (b"{", b"{ "), (b"}", b" }"), (b"[", b"[ "),
    (b"/", b"\\/"), (b"a", b"\\u0061"), (b"\\n", b"\\u000a"), (b"\\n", b"\\u000A"),
    (b"\\u001f", b"\\u001F"), (b"\\\\", b"\\u005c"), (b"\x7f", b"\\u007f"),
    ("é".encode(), b"\\u00e9"), ("😀".encode(), b"\\ud83d\\ude00"), (b"\xe2\x80\xa8", b"\\u2028"),
    (b'"', b"'"), (b":", b":9007199254740992,\"z\":"), (b"]", b",]"), (b"}", b",}"),
    (b"{", b"{" + b"[" * MAX_DEPTH), (b"\\", b"\\ud800"), (b"a", b"\xff"), (b"a", b"\xed\xa0\x80"),
]


@settings(max_examples=400, deadline=None)
@given(canonical_docs, st.integers(0, len(EDITS) - 1), st.integers(0, 3), st.integers(0, 50))
@example({"a": 1, "b": [1]}, 0, 0, 0)
def test_edited_canonical_bytes(doc: dict[str, object], edit: int, which: int,
                                position: int) -> None:
    good = canonical_json(doc)
    old, new = EDITS[edit]
    at = -1
    for _ in range(which + 1):
        at = good.find(old, at + 1)
        if at < 0:
            break
    leaves = [good]
    if at >= 0:
        leaves.append(good[:at] + new + good[at + len(old):])
    # Key order and duplicates: swap the first two keys, repeat the first one.
    pairs = list(doc.items())
    if len(pairs) >= 2:
        first, second = (json.dumps(k, ensure_ascii=False) + ":" + canonical_json([v])
                         .decode()[1:-1] for k, v in pairs[:2])
        leaves.append(("{" + second + "," + first + "}").encode("utf-8", "surrogatepass"))
        leaves.append(("{" + first + "," + first + "}").encode("utf-8", "surrogatepass"))
    # Flip one byte anywhere.
    flipped = bytearray(good)
    flipped[position % len(good)] ^= 0x01 << (position % 7)
    leaves.append(bytes(flipped))
    assert first_noncanonical(leaves) == reference(leaves)
    for leaf in leaves:
        assert first_noncanonical([leaf]) == reference([leaf])
        assert first_noncanonical([good, good, leaf]) == reference([good, good, leaf])


@given(st.integers(1, 40), st.sampled_from(["[", '{"k":']))
def test_nesting_depth_at_and_past_the_limit(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    leaf = ('{"a":' + opener * depth + "1" + closer * depth + "}").encode()
    assert first_noncanonical([leaf]) == reference([leaf])
