"""Canonical JSON encoding of audit-log leaves and their RFC 3339 UTC timestamps."""

from __future__ import annotations

import functools
import itertools
import json
import operator
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from provisioning.errors import DomainError

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "CanonicalError",
    "canonical_json",
    "canonical_many",
    "first_noncanonical",
    "format_time",
    "parse_canonical",
    "parse_time",
]

# Integers outside the IEEE 754 double-exact range silently change value in
# JavaScript and many JSON decoders (RFC 7493 I-JSON section 2.2); an auditor must
# read back exactly the number that was hashed.
MAX_SAFE_INTEGER = 2**53 - 1
# Leaves are shallow records; a depth bound keeps hostile input from exhausting
# the recursion limit.
MAX_DEPTH = 32

_TIME_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")

_encoder = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
    check_circular=False,  # _validate already bounds depth, so cycles cannot get here
)


class CanonicalError(DomainError):
    """A value or byte string is not canonical audit-log JSON."""

    status = 500
    code = "not-canonical"
    title = "Audit event not canonical"


def _validate(value: object, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    # Exact type checks: bool is an int subclass, and str/int/dict/list
    # subclasses could override how they serialise.
    kind = type(value)
    if type(value) is str:
        _validate_str(value, path)
    elif type(value) is int:
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalError(
                f"{path}: integer {value} is outside ±(2**53 - 1); encode it as a string"
            )
    elif type(value) is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise CanonicalError(
                    f"{path}: object key {key!r} is a {type(key).__name__}; keys must be str"
                )
            _validate_str(key, f"{path} key {key!r}")
            _validate(item, f"{path}.{key}", depth + 1)
    elif type(value) is list:
        for i, item in enumerate(value):
            _validate(item, f"{path}[{i}]", depth + 1)
    elif kind is float:
        raise CanonicalError(f"{path}: floats are not allowed; use an integer or a string")
    elif value is None or kind is bool:
        raise CanonicalError(
            f"{path}: {value!r} is not allowed; only objects, arrays, strings and integers"
        )
    else:
        raise CanonicalError(
            f"{path}: {kind.__name__} is not allowed; only dict, list, str and int"
        )


def _validate_str(value: str, path: str) -> None:
    # Lone surrogates cannot be encoded as UTF-8, so they could never round-trip.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalError(f"{path}: string contains a lone surrogate") from None


def canonical_json(obj: object) -> bytes:
    """Encode a leaf as canonical JSON bytes.

    UTF-8, keys sorted by code point, no whitespace, non-ASCII kept as UTF-8.
    Only dict (str keys), list, str and int (within ±(2**53 - 1)) are allowed;
    floats, bools, None and anything else raise CanonicalError.
    """
    _validate(obj, "$", 0)
    return _encoder.encode(obj).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise CanonicalError(f"{name} is not allowed in canonical JSON")


def _reject_float(text: str) -> Any:
    raise CanonicalError(f"number {text} is not an integer; floats are not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise CanonicalError(f"duplicate object key {key!r}")
        result[key] = value
    return result


def parse_canonical(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """Decode canonical JSON bytes into a dict, checking they are exactly canonical.

    Raises CanonicalError unless ``canonical_json(result) == data``, so a leaf has
    exactly one accepted byte representation.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CanonicalError(f"expected bytes, got {type(data).__name__}")
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CanonicalError(f"not valid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except CanonicalError:
        raise
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and over-long integer literals.
        raise CanonicalError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CanonicalError(f"top level must be a JSON object, got {type(value).__name__}")
    if canonical_json(value) != raw:
        raise CanonicalError(
            "JSON is valid but not canonical (key order, whitespace, escaping or "
            "number format differ); re-encode it with canonical_json"
        )
    return value


# --- checking many leaves fast -------------------------------------------------------------

# orjson's compact, key-sorted output is byte for byte canonical_json's for every value
# the log allows: the same escape for every code point (a test compares all of them),
# keys sorted by code point, the same integers; with STRICT_INTEGER it refuses integers
# past +-(2**53 - 1). What else parse_canonical refuses but would re-encode unchanged
# (true, false, null, floats, nesting past MAX_DEPTH) shows in the decoded value's types.
_ORJSON_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER
_SCALARS = frozenset({str, int})
_ALLOWED = frozenset({str, int, list, dict})
_SLICE = 256
_dumps = functools.partial(orjson.dumps, option=_ORJSON_CANONICAL)


def _dump_canonical(value: object) -> bytes:
    # Only objects: a top-level array or string re-encodes unchanged but is not a leaf.
    if type(value) is not dict:
        return b""
    return orjson.dumps(value, option=_ORJSON_CANONICAL)


def _plain(objects: Sequence[dict[str, Any]], *, keys: bool = False,
           limit: int | None = None) -> bool:
    """Every value under these objects is a str, an int, or a list or dict of them, at
    most MAX_DEPTH deep (_validate's exact type rule), checked a level at a time.

    With `keys`, every object key (the top level's too) must be exactly a str: decoded
    JSON needs no such check, a caller's values do. Past `limit` values on one level the
    answer is False (a structure sharing one list many times, or a cycle, grows each
    level; the caller's slow path then decides).
    """
    if keys and not set(map(type, itertools.chain.from_iterable(objects))) <= {str}:
        return False
    level: list[Any] = list(itertools.chain.from_iterable(map(dict.values, objects)))
    for _ in range(MAX_DEPTH):
        kinds = set(map(type, level))
        if kinds <= _SCALARS:
            return True
        if not kinds <= _ALLOWED or (limit is not None and len(level) > limit):
            return False
        inner: list[Any] = []
        if list in kinds:
            inner.extend(itertools.chain.from_iterable([v for v in level if type(v) is list]))
        if dict in kinds:
            inner_dicts = [v for v in level if type(v) is dict]
            if keys and not set(map(type, itertools.chain.from_iterable(inner_dicts))) <= {str}:
                return False
            inner.extend(itertools.chain.from_iterable(map(dict.values, inner_dicts)))
        level = inner
    return not level


def canonical_many(objects: Sequence[object]) -> list[bytes]:
    """canonical_json of each object (a leaf: a dict), byte for byte, in one pass.

    Objects of plain values (_plain with keys) are encoded by orjson, which writes exactly
    canonical_json's bytes for them and itself refuses the rest of what _validate refuses
    (integers past +-(2**53 - 1), lone surrogates). Anything else, or anything orjson
    refuses, goes through canonical_json, which raises CanonicalError naming the problem.
    """
    if set(map(type, objects)) == {dict}:
        documents: Sequence[dict[str, Any]] = objects  # type: ignore[assignment]
        if _plain(documents, keys=True, limit=_SLICE * max(len(objects), 1)):
            try:
                return list(map(_dumps, documents))
            except orjson.JSONEncodeError:
                pass
    return [canonical_json(obj) for obj in objects]


def _fast_accepts(leaf: bytes) -> bool:
    try:
        value = orjson.loads(leaf)
        return type(leaf) is bytes and _dump_canonical(value) == leaf and _plain([value])
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return False


def first_noncanonical(leaves: Sequence[bytes]) -> tuple[int, str] | None:
    """Position and parse_canonical's reason for the first leaf it refuses, or None.

    Exactly ``parse_canonical`` on each leaf in turn, at a fraction of the cost: a leaf
    that orjson decodes to plain values and re-encodes to the same bytes is canonical;
    every other leaf goes to parse_canonical itself, which decides and names the reason.
    So the fast path can only ever agree with parse_canonical.
    """
    suspects: list[int] = []
    # In slices: decoded objects kept alive in their thousands make the cyclic garbage
    # collector rescan them over and over (it doubled the cost).
    for start in range(0, len(leaves), _SLICE):
        part = leaves[start:start + _SLICE]
        try:
            # The common case in C: decode and re-encode every leaf, all types at once.
            objects = list(map(orjson.loads, part))
            if set(map(type, objects)) != {dict}:
                raise TypeError("not every leaf is an object")
            same = list(map(operator.eq, map(_dumps, objects), part))
            if all(same) and _plain(objects):
                continue  # the common slice: nothing suspect in it
            same = [ok and _plain([o]) for o, ok in zip(objects, same, strict=True)]
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, TypeError):
            same = list(map(_fast_accepts, part))
        suspects.extend(start + i for i, ok in enumerate(same) if ok is not True)
    for i in suspects:
        try:
            parse_canonical(leaves[i])
        except CanonicalError as exc:
            return i, str(exc)
    return None


def format_time(when: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC with seconds precision, e.g. 2024-01-02T03:04:05Z.

    Sub-second parts are truncated (not rounded) so a time never moves forward.
    """
    if not isinstance(when, datetime):
        raise CanonicalError(f"expected a datetime, got {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise CanonicalError(
            "naive datetime has no time zone; pass an aware one, e.g. datetime.now(UTC)"
        )
    u = when.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}Z"


def parse_time(text: str) -> datetime:
    """Parse the exact format_time() form back into an aware UTC datetime.

    Only ``YYYY-MM-DDTHH:MM:SSZ`` is accepted: no offsets, fractions or lowercase,
    so every instant has one string form.
    """
    if not isinstance(text, str):
        raise CanonicalError(f"expected a str timestamp, got {type(text).__name__}")
    m = _TIME_RE.fullmatch(text)
    if m is None:
        raise CanonicalError(f"timestamp {text!r} is not of the form YYYY-MM-DDTHH:MM:SSZ")
    year, month, day, hour, minute, second = (int(part) for part in m.groups())
    try:
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise CanonicalError(f"timestamp {text!r} is not a valid UTC time: {exc}") from None
