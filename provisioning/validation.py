"""Pure field validators shared by the use-cases; each failure names the field and the fix."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

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


# RFC 3339 section 5.6, ASCII digits only (\d would also match Arabic-Indic or full-width
# digits); a lower-case t/z is allowed by the RFC.
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
# Every time the API takes lies in this range, so it converts to UTC and back to any
# offset without leaving what datetime, SQLite and PostgreSQL can represent.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)
TIME_EXAMPLE = "2026-12-31T00:00:00Z"


def timestamp(field: str, value: object) -> datetime:
    """The one parser for times: RFC 3339 with an offset, within EARLIEST..LATEST, in UTC."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be an RFC 3339 time string such as {TIME_EXAMPLE}")
    match = _RFC3339.fullmatch(value) if len(value) <= 40 else None
    if match is None:
        raise InvalidInput(
            field,
            "must be an RFC 3339 time with a date, a time and a UTC offset, "
            f"such as {TIME_EXAMPLE}",
        )
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        offset = (
            timedelta(0)
            if zulu
            else (-1 if sign == "-" else 1) * timedelta(hours=int(off_h), minutes=int(off_m))
        )
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        local = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro,
            tzinfo=timezone(offset),
        )
    except ValueError as exc:  # month 13, 31 April, second 60, offset 24:00, year 0
        raise InvalidInput(field, f"{value!r} is not a valid date and time") from exc
    try:
        parsed = local.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:30:00+01:00 is before year 1 in UTC
        raise _out_of_range(field) from exc
    if not EARLIEST <= parsed <= LATEST:
        raise _out_of_range(field)
    return parsed


def _out_of_range(field: str) -> InvalidInput:
    return InvalidInput(
        field, f"must lie between {rfc3339(EARLIEST)} and {rfc3339(LATEST)} in UTC"
    )


# Decimal text from a URL or a command line: ASCII digits only (str.isdigit() also accepts
# '²' and '٣', which int() refuses), and bounded in length before int() ever sees it.
_DIGITS = re.compile(r"[0-9]{1,19}")


def whole_number(field: str, text: str, *, minimum: int, maximum: int) -> int:
    """The one parser for integers written as text: plain ASCII digits, within the bounds."""
    if not _DIGITS.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise InvalidInput(field, f"must be a whole number from {minimum} to {maximum}")
    return int(text)


def rfc3339(value: datetime) -> str:
    """UTC, seconds precision, trailing Z: the one time format on every wire."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class IdFormat:
    """What an identifier looks like: a pattern (ECMA-262 and Python alike) and a length cap."""

    what: str  # "tenant id", used in messages
    pattern: str
    max_len: int
    example: str

    def matches(self, text: str) -> bool:
        return len(text) <= self.max_len and re.fullmatch(self.pattern, text) is not None


def identifier(field: str, text: str, fmt: IdFormat) -> str:
    """The one parser for identifiers: checked against its format before any lookup uses it."""
    if not fmt.matches(text):
        raise InvalidInput(field, f"is not a {fmt.what} (such as {fmt.example})")
    return text
