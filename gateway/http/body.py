"""Strict JSON request bodies: size-capped, depth-capped, no duplicate keys, no unknown fields."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from gateway.http.problems import Problem, bad_request


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# No request body of this API nests deeper than 3; the cap keeps the decoder far from
# Python's recursion limit whatever a client sends.
MAX_DEPTH = 16


_STRUCTURE = re.compile(r'[\\"\[\]{}]')
# Whole strings (escapes inside them) and runs of anything but brackets and quotes: what
# is left after removing them is the brackets outside strings, and a quote only if a
# string never ends.
_NOT_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^\[\]{}"]+', re.DOTALL)
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep(text: str) -> str | None:
    """The top-level field whose value nests deeper than MAX_DEPTH ("" if not in a field).

    A screen in C first (an agent's batch of events is a few hundred objects): the
    deepest nesting of the brackets outside strings. Only a body that fails it (or has
    a string that never ends) is scanned in Python to name the field.
    """
    brackets = _NOT_BRACKETS.sub("", text)
    if '"' not in brackets and max(
            itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0) <= MAX_DEPTH:
        return None
    return _deep_field(text)


def _deep_field(text: str) -> str | None:
    """_too_deep in one pass over the text's quotes, backslashes and brackets."""
    depth = 0
    in_string = False
    string_start = escaped_at = -1
    field = ""
    for match in _STRUCTURE.finditer(text):
        ch, i = match.group(), match.start()
        if in_string:
            if i == escaped_at:
                continue
            if ch == "\\":
                escaped_at = i + 1
            elif ch == '"':
                in_string = False
                if depth == 1:  # a top-level key or string value: the latest names the field
                    field = text[string_start : i + 1]
        elif ch == '"':
            in_string, string_start = True, i
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                try:
                    return str(json.loads(field)) if field else ""
                except ValueError:
                    return ""
        elif ch in "]}":
            depth -= 1
    return None


def parse_json_object(raw: bytes, *, allowed: Iterable[str]) -> dict[str, Any]:
    """Decode a JSON object; name the first problem precisely."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("request body must be UTF-8 encoded JSON") from exc
    field = _too_deep(text)
    if field is not None:
        raise bad_request(
            f"request body nests deeper than {MAX_DEPTH} levels"
            + (f" in field {field!r}" if field else "")
            + "; no field of this API needs that",
            field=field or None,
        )
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise bad_request(
            f"field {exc.args[0]!r} appears more than once", field=exc.args[0]
        ) from exc
    except ValueError as exc:
        raise bad_request(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise bad_request("request body must be a JSON object")
    unknown = sorted(set(doc) - set(allowed))
    if unknown:
        raise bad_request(
            f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
            field=unknown[0],
        )
    return doc


async def read_json(
    request: web.Request, *, allowed: Iterable[str], optional: bool = False
) -> dict[str, Any]:
    if request.content_length == 0 or (not request.body_exists):
        if optional:
            return {}
        raise bad_request("request body is required (a JSON object)")
    ctype = request.content_type
    if ctype != "application/json":
        raise Problem(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send Content-Type: application/json (got {ctype or 'none'})",
        )
    raw = await request.read()
    return parse_json_object(raw, allowed=allowed)
