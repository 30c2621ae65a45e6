"""Pure field validators shared by the use-cases; each failure names the field and the fix."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

from provisioning.errors import InvalidInput

_EMAIL = re.compile(
    r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_REFERENCE = re.compile(r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$")


def text(field: str, value: object, *, max_len: int = 64, min_len: int = 1) -> str:
    """A printable single-line string: no control characters, trimmed, bounded."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be a string")
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise InvalidInput(field, "must not contain control or invisible format characters")
    if value != value.strip():
        raise InvalidInput(field, "must not start or end with whitespace")
    if not min_len <= len(value) <= max_len:
        raise InvalidInput(field, f"must be {min_len} to {max_len} characters long")
    return value


def reference(field: str, value: object, *, max_len: int = 200) -> str:
    """An ASCII reference such as a document or case number."""
    value = text(field, value, max_len=max_len)
    if not _REFERENCE.match(value):
        raise InvalidInput(field, "must be printable ASCII")
    return value


def email(field: str, value: object) -> str:
    value = text(field, value, max_len=254, min_len=3)
    if not _EMAIL.match(value):
        raise InvalidInput(field, "must be an e-mail address like ops@example.com")
    return value


def country(field: str, value: object) -> str:
    if not isinstance(value, str) or not _COUNTRY.match(value):
        raise InvalidInput(field, "must be an ISO 3166-1 alpha-2 code in capitals, e.g. PK")
    return value


def integer(field: str, value: object, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, "must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidInput(field, f"must be between {minimum} and {maximum}")
    return value


def boolean(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def timestamp(field: str, value: object) -> datetime:
    """RFC 3339 with an explicit offset; returned in UTC."""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be an RFC 3339 time string such as 2026-12-31T00:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(field, "must be an RFC 3339 time such as 2026-12-31T00:00:00Z") from exc
    if parsed.tzinfo is None or "T" not in value:
        raise InvalidInput(field, "must include a date, a time and a UTC offset (e.g. ...Z)")
    return parsed.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """UTC, seconds precision, trailing Z: the one time format on every wire."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
