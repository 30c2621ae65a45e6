"""Query and path parameters, declared once: each parses its text and describes itself to OpenAPI.

A route lists its parameters; the router parses all of them before the handler runs
(after authentication), so a handler only ever sees values that passed the one parser
of their kind (whole numbers, RFC 3339 times, identifiers, choices) — and the OpenAPI
document states the very bounds that parser enforces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web

from gateway.http.problems import Problem, bad_request
from provisioning import validation
from provisioning.errors import InvalidInput
from provisioning.validation import IdFormat

T = TypeVar("T")
Location = Literal["query", "path"]

_PARSED: web.RequestKey[dict[str, object]] = web.RequestKey("parsed_params", dict)


class Param(Generic[T]):
    """One declared parameter; subclasses supply `parse` and `schema`."""

    def __init__(
        self,
        name: str,
        *,
        description: str,
        location: Location = "query",
        required: bool = False,
        default: T | None = None,
        malformed_is_missing: bool = True,
    ) -> None:
        self.name = name
        # A malformed path id names nothing that can exist (404); a path value that is
        # not an id (a period, say) is simply invalid input (400).
        self.malformed_is_missing = malformed_is_missing
        self.description = description
        self.location: Location = location
        self.required = required or location == "path"
        self.default = default

    def parse(self, text: str) -> T:
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def openapi(self) -> dict[str, Any]:
        schema = self.schema()
        if self.default is not None:
            schema["default"] = self.default
        return {
            "name": self.name,
            "in": self.location,
            "required": self.required,
            "description": self.description,
            "schema": schema,
        }

    def extract(self, request: web.Request) -> T | None:
        """Parse this parameter out of a request; a failure names it."""
        if self.location == "path":
            return self._from_path(request.match_info[self.name])
        texts = request.query.getall(self.name, [])
        if len(texts) > 1:
            raise bad_request(
                f"query parameter {self.name} appears more than once; send it once",
                field=self.name,
            )
        if not texts:
            if self.required:
                raise bad_request(f"query parameter {self.name} is required", field=self.name)
            return self.default
        try:
            return self.parse(texts[0])
        except InvalidInput as error:
            raise bad_request(f"query parameter {error.detail}", field=self.name) from error

    def from_path(self, request: web.Request) -> T:
        """This path parameter parsed where no Route declares it (the HTML pages)."""
        return self._from_path(request.match_info[self.name])

    def _from_path(self, text: str) -> T:
        try:
            return self.parse(text)
        except InvalidInput as error:
            if not self.malformed_is_missing:
                raise bad_request(error.detail, field=self.name) from error
            # Nothing can live at a path whose id is malformed: the resource is missing.
            raise Problem(
                404,
                "not-found",
                "Not found",
                f"{error.detail}; nothing has this id",
                field=self.name,
            ) from error

    def value(self, request: web.Request) -> T:
        """The parsed value of a required or defaulted parameter."""
        found = self.optional(request)
        assert found is not None, f"parameter {self.name} has neither a value nor a default"
        return found

    def optional(self, request: web.Request) -> T | None:
        parsed = request[_PARSED]
        if self.name not in parsed:
            raise LookupError(f"parameter {self.name} is not declared on this route")
        return parsed[self.name]  # type: ignore[return-value]


class WholeNumber(Param[int]):
    def __init__(self, name: str, *, minimum: int, maximum: int, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.minimum, self.maximum = minimum, maximum

    def parse(self, text: str) -> int:
        return validation.whole_number(self.name, text, minimum=self.minimum, maximum=self.maximum)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


class Time(Param[datetime]):
    def parse(self, text: str) -> datetime:
        return validation.timestamp(self.name, text)

    def schema(self) -> dict[str, Any]:
        return time_schema()


class Identifier(Param[str]):
    def __init__(self, name: str, fmt: IdFormat, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.fmt = fmt

    def parse(self, text: str) -> str:
        return validation.identifier(self.name, text, self.fmt)

    def schema(self) -> dict[str, Any]:
        return id_schema(self.fmt)


class Parsed(Param[T]):
    """A value with its own parser (which raises InvalidInput) and its own schema."""

    def __init__(
        self, name: str, parse: Callable[[str], T], schema: Mapping[str, Any], **kw: Any
    ) -> None:
        super().__init__(name, **kw)
        self._parse, self._schema = parse, dict(schema)

    def parse(self, text: str) -> T:
        return self._parse(text)

    def schema(self) -> dict[str, Any]:
        return dict(self._schema)


class Choice(Param[str]):
    def __init__(self, name: str, choices: Sequence[str], **kw: Any) -> None:
        super().__init__(name, **kw)
        self.choices = tuple(choices)

    def parse(self, text: str) -> str:
        if text not in self.choices:
            raise InvalidInput(self.name, f"must be one of {', '.join(self.choices)}")
        return text

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


def time_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "description": "RFC 3339 with a UTC offset, between "
        f"{validation.rfc3339(validation.EARLIEST)} and {validation.rfc3339(validation.LATEST)}",
        "examples": [validation.TIME_EXAMPLE],
    }


def id_schema(fmt: IdFormat) -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": fmt.pattern,
        "maxLength": fmt.max_len,
        "description": fmt.what[0].upper() + fmt.what[1:],
        "examples": [fmt.example],
    }


def parse_all(request: web.Request, params: Sequence[Param[Any]]) -> None:
    """Parse every declared parameter before the handler runs."""
    request[_PARSED] = {p.name: p.extract(request) for p in params}
