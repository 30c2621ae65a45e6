"""Strict RFC 8941 Structured Field Values: the subset the regulator signatures need."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

__all__ = [
    "BareItem",
    "Dictionary",
    "InnerList",
    "Item",
    "Member",
    "Parameters",
    "StructuredFieldError",
    "Token",
    "parse_dictionary",
    "parse_item",
    "parse_list",
    "serialize_bare_item",
    "serialize_dictionary",
    "serialize_inner_list",
    "serialize_item",
    "serialize_key",
    "serialize_list",
    "serialize_member",
    "serialize_parameters",
]

MAX_INTEGER = 999_999_999_999_999
_MAX_DECIMAL_INTEGER_PART = 999_999_999_999

_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")
_DIGITS = frozenset("0123456789")
# Keys and tokens, whole (fullmatch) or at the parser's cursor (match); the other fast
# paths hand input they do not match to the character-by-character code, which names
# what is wrong.
_KEY_AT = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN_AT = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_INTEGER_AT = re.compile(r"-?[0-9]{1,15}(?![0-9.])")
_STRING_AT = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')  # printable; \" and \\ escaped
_UNESCAPE = re.compile(r'\\(["\\])')
_PRINTABLE = re.compile(r"[ -~]*\Z")


class StructuredFieldError(ValueError):
    """The text is not a valid RFC 8941 structured field (or a value cannot be serialized)."""


@dataclass(frozen=True)
class Token:
    """An RFC 8941 Token (distinct from a String: serialized without quotes)."""

    value: str

    def __post_init__(self) -> None:
        if not _TOKEN_AT.fullmatch(self.value):
            raise StructuredFieldError(f"invalid token {self.value!r}")


BareItem = int | Decimal | str | Token | bytes | bool
Parameters = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True)
class Item:
    """A bare item with (ordered) parameters."""

    value: BareItem
    params: Parameters = ()


@dataclass(frozen=True)
class InnerList:
    """An inner list of items with (ordered) parameters."""

    items: tuple[Item, ...]
    params: Parameters = ()


Member = Item | InnerList
Dictionary = dict[str, Member]


# --------------------------------------------------------------------------- parsing


class _Parser:
    """Single-use cursor over an ASCII field value (RFC 8941 section 4.2)."""

    def __init__(self, text: str, *, reject_duplicates: bool) -> None:
        if not text.isascii():
            raise StructuredFieldError("structured field contains non-ASCII characters")
        self.s = text
        self.i = 0
        self.reject_duplicates = reject_duplicates

    # -- helpers
    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def eof(self) -> bool:
        return self.i >= len(self.s)

    def fail(self, what: str) -> StructuredFieldError:
        return StructuredFieldError(f"{what} at offset {self.i} of {self.s!r}")

    def skip_sp(self) -> None:
        while self.peek() == " ":
            self.i += 1

    def skip_ows(self) -> None:
        while self.peek() in (" ", "\t") and not self.eof():
            self.i += 1

    def finish(self) -> None:
        self.skip_sp()
        if not self.eof():
            raise self.fail("unexpected trailing characters")

    # -- top level
    def dictionary(self) -> Dictionary:
        out: Dictionary = {}
        self.skip_sp()
        while not self.eof():
            key = self.key()
            member: Member
            if self.peek() == "=":
                self.i += 1
                member = self.item_or_inner_list()
            else:
                member = Item(True, self.parameters())
            if key in out and self.reject_duplicates:
                raise self.fail(f"duplicate dictionary key {key!r}")
            out[key] = member
            if self.commas_end():
                break
        self.finish()
        return out

    def list_(self) -> list[Member]:
        out: list[Member] = []
        self.skip_sp()
        while not self.eof():
            out.append(self.item_or_inner_list())
            if self.commas_end():
                break
        self.finish()
        return out

    def commas_end(self) -> bool:
        """After a member: True at end of input; consumes ``OWS "," OWS`` otherwise."""
        self.skip_ows()
        if self.eof():
            return True
        if self.peek() != ",":
            raise self.fail("expected ',' between members")
        self.i += 1
        self.skip_ows()
        if self.eof():
            raise self.fail("trailing comma")
        return False

    def item_or_inner_list(self) -> Member:
        if self.peek() == "(":
            return self.inner_list()
        return self.item()

    def inner_list(self) -> InnerList:
        if self.peek() != "(":
            raise self.fail("expected '('")
        self.i += 1
        items: list[Item] = []
        while not self.eof():
            self.skip_sp()
            if self.peek() == ")":
                self.i += 1
                return InnerList(tuple(items), self.parameters())
            items.append(self.item())
            if self.peek() not in (" ", ")"):
                raise self.fail("expected ' ' or ')' in inner list")
        raise self.fail("unterminated inner list")

    def item(self) -> Item:
        value = self.bare_item()
        return Item(value, self.parameters())

    def parameters(self) -> Parameters:
        params: dict[str, BareItem] = {}
        while self.peek() == ";":
            self.i += 1
            self.skip_sp()
            key = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.i += 1
                value = self.bare_item()
            if key in params and self.reject_duplicates:
                raise self.fail(f"duplicate parameter {key!r}")
            params[key] = value
        return tuple(params.items())

    def key(self) -> str:
        m = _KEY_AT.match(self.s, self.i)
        if m is None:
            raise self.fail("expected a key (lowercase letter or '*')")
        self.i = m.end()
        return m.group()

    def bare_item(self) -> BareItem:
        c = self.peek()
        if c and (c == "-" or c in _DIGITS):
            return self.number()
        if c == '"':
            return self.string()
        if c == ":":
            return self.byte_sequence()
        if c == "?":
            return self.boolean()
        if c and (c.isalpha() or c == "*"):
            return self.token()
        raise self.fail("expected an item")

    def number(self) -> int | Decimal:
        m = _INTEGER_AT.match(self.s, self.i)
        if m is not None:
            self.i = m.end()
            return int(m.group())
        start = self.i
        negative = self.peek() == "-"
        if negative:
            self.i += 1
        if self.eof() or self.peek() not in _DIGITS:
            raise self.fail("expected a digit")
        is_decimal = False
        digits_start = self.i
        while not self.eof():
            c = self.s[self.i]
            if c in _DIGITS:
                self.i += 1
            elif c == "." and not is_decimal:
                if self.i - digits_start > 12:
                    raise self.fail("decimal integer part longer than 12 digits")
                is_decimal = True
                self.i += 1
            else:
                break
            length = self.i - digits_start
            if not is_decimal and length > 15:
                raise self.fail("integer longer than 15 digits")
            if is_decimal and length > 16:
                raise self.fail("decimal longer than 16 characters")
        text = self.s[start : self.i]
        if not is_decimal:
            return int(text)
        if text.endswith("."):
            raise self.fail("decimal without fractional digits")
        if len(text.rsplit(".", 1)[1]) > 3:
            raise self.fail("decimal with more than 3 fractional digits")
        return Decimal(text)

    def string(self) -> str:
        m = _STRING_AT.match(self.s, self.i)
        if m is not None:
            self.i = m.end()
            text = m.group(1)
            return _UNESCAPE.sub(r"\1", text) if "\\" in text else text
        self.i += 1  # opening quote
        out: list[str] = []
        while not self.eof():
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                if self.eof():
                    raise self.fail("unterminated escape in string")
                nxt = self.s[self.i]
                self.i += 1
                if nxt not in ('"', "\\"):
                    raise self.fail("invalid escape in string")
                out.append(nxt)
            elif c == '"':
                return "".join(out)
            elif not (" " <= c <= "~"):
                raise self.fail("control character in string")
            else:
                out.append(c)
        raise self.fail("unterminated string")

    def token(self) -> Token:
        m = _TOKEN_AT.match(self.s, self.i)
        assert m is not None  # bare_item() saw a letter or '*' here
        self.i = m.end()
        return Token(m.group())

    def byte_sequence(self) -> bytes:
        self.i += 1  # opening colon
        end = self.s.find(":", self.i)
        if end < 0:
            raise self.fail("unterminated byte sequence")
        b64 = self.s[self.i : end]
        self.i = end + 1
        if not _BASE64_RE.match(b64) or len(b64) % 4 == 1:
            raise self.fail("invalid base64 in byte sequence")
        # RFC 8941 4.2.7: parsers SHOULD NOT fail when '=' padding is missing.
        padded = b64 + "=" * (-len(b64) % 4)
        try:
            decoded = base64.b64decode(padded, validate=True)
        except binascii.Error as exc:  # pragma: no cover - guarded by the regex above
            raise self.fail("invalid base64 in byte sequence") from exc
        # Refuse non-canonical encodings (non-zero pad bits): one value, one spelling.
        if base64.b64encode(decoded).decode("ascii") != padded:
            raise self.fail("non-canonical base64 in byte sequence")
        return decoded

    def boolean(self) -> bool:
        self.i += 1
        c = self.peek()
        if not c or c not in "01":
            raise self.fail("boolean must be ?0 or ?1")
        self.i += 1
        return c == "1"


def _join_lines(value: str | Iterable[str]) -> str:
    # RFC 8941 4.2: multiple field lines are combined with ", " before parsing.
    return value if isinstance(value, str) else ", ".join(value)


def parse_dictionary(value: str | Iterable[str], *, reject_duplicates: bool = False) -> Dictionary:
    """Parse a Dictionary field value (one string, or the field lines in order).

    RFC 8941 lets a repeated key overwrite the earlier one; pass ``reject_duplicates``
    to refuse repeated dictionary keys and repeated parameters instead.
    """
    return _Parser(_join_lines(value), reject_duplicates=reject_duplicates).dictionary()


def parse_list(value: str | Iterable[str], *, reject_duplicates: bool = False) -> list[Member]:
    """Parse a List field value."""
    return _Parser(_join_lines(value), reject_duplicates=reject_duplicates).list_()


def parse_item(value: str, *, reject_duplicates: bool = False) -> Item:
    """Parse an Item field value."""
    p = _Parser(value, reject_duplicates=reject_duplicates)
    p.skip_sp()
    item = p.item()
    p.finish()
    return item


# --------------------------------------------------------------------------- serializing


def serialize_key(key: str) -> str:
    """Serialize a dictionary or parameter key."""
    if not _KEY_AT.fullmatch(key):
        raise StructuredFieldError(f"invalid key {key!r}")
    return key


def _serialize_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise StructuredFieldError(f"decimal {value} is not finite")
    try:
        rounded = value.quantize(Decimal("0.001"), rounding=ROUND_HALF_EVEN)
    except InvalidOperation as exc:
        raise StructuredFieldError(f"decimal {value} out of range") from exc
    if abs(rounded) > _MAX_DECIMAL_INTEGER_PART + Decimal("0.999"):
        raise StructuredFieldError(f"decimal {value} out of range")
    sign = "-" if rounded < 0 else ""
    integer, _, fraction = f"{abs(rounded):f}".partition(".")
    fraction = fraction.rstrip("0") or "0"
    return f"{sign}{integer}.{fraction}"


def serialize_bare_item(value: BareItem) -> str:
    """Serialize a bare item (no parameters)."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "?1" if value else "?0"
    if isinstance(value, int):
        if not -MAX_INTEGER <= value <= MAX_INTEGER:
            raise StructuredFieldError(f"integer {value} out of range")
        return str(value)
    if isinstance(value, Decimal):
        return _serialize_decimal(value)
    if isinstance(value, str):
        if not _PRINTABLE.match(value):
            raise StructuredFieldError(f"string {value!r} has non-printable or non-ASCII text")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Token):
        return value.value
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode("ascii") + ":"
    raise StructuredFieldError(f"cannot serialize {type(value).__name__}")


def serialize_parameters(params: Parameters) -> str:
    """Serialize parameters (``;key`` for true booleans, ``;key=value`` otherwise)."""
    out: list[str] = []
    for key, value in params:
        out.append(";" + serialize_key(key))
        if value is not True:
            out.append("=" + serialize_bare_item(value))
    return "".join(out)


def serialize_item(item: Item) -> str:
    """Serialize an item with its parameters."""
    return serialize_bare_item(item.value) + serialize_parameters(item.params)


def serialize_inner_list(inner: InnerList) -> str:
    """Serialize an inner list with its parameters."""
    body = " ".join(serialize_item(i) for i in inner.items)
    return f"({body}){serialize_parameters(inner.params)}"


def serialize_member(member: Member) -> str:
    """Serialize a list or dictionary member value (item or inner list)."""
    if isinstance(member, InnerList):
        return serialize_inner_list(member)
    return serialize_item(member)


def serialize_list(members: Iterable[Member]) -> str:
    """Serialize a List."""
    return ", ".join(serialize_member(m) for m in members)


def serialize_dictionary(members: Mapping[str, Member]) -> str:
    """Serialize a Dictionary (``key`` alone when the value is an item that is true)."""
    out: list[str] = []
    for key, member in members.items():
        k = serialize_key(key)
        if isinstance(member, Item) and member.value is True:
            out.append(k + serialize_parameters(member.params))
        else:
            out.append(f"{k}={serialize_member(member)}")
    return ", ".join(out)
