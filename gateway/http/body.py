"""Strict JSON request bodies: size-capped, no duplicate keys, no unknown fields."""

from __future__ import annotations

import json
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


def parse_json_object(raw: bytes, *, allowed: Iterable[str]) -> dict[str, Any]:
    """Decode a JSON object; name the first problem precisely."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("request body must be UTF-8 encoded JSON") from exc
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


def query_int(request: web.Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not minimum <= int(text) <= maximum:
        raise bad_request(
            f"query parameter {name} must be an integer {minimum}..{maximum}", field=name
        )
    return int(text)
