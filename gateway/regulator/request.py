"""The regulator's query document (DESIGN section 6), parsed and checked against its scope."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provisioning import ids, validation
from provisioning.errors import DomainError, InvalidInput

_TOP = {"request_id", "authorisation", "query", "max_hits"}
_REQUEST_ID = {"country", "authority", "number"}
_AUTHORISATION = {"reference", "legal_basis", "valid_from", "valid_until"}
QUERY_FIELDS = {
    "attribution.tunnel_ip": ({"kind", "ip", "at"}, {"kind", "ip", "at"}),
    "attribution.endpoint": ({"kind", "ip", "port", "at"}, {"kind", "ip", "at"}),
    "activity.tenant": ({"kind", "tenant_id", "from", "to"}, {"kind", "tenant_id", "from", "to"}),
    "activity.peer": ({"kind", "peer_id", "from", "to"}, {"kind", "peer_id", "from", "to"}),
    "attribution.egress": ({"kind", "ip", "port", "at"}, {"kind", "ip", "port", "at"}),
}
# The query kinds, in the order they are documented; adding a kind here (and its fields'
# schemas in gateway.api.schemas) also adds it to the OpenAPI document.
KINDS = tuple(QUERY_FIELDS)


class ScopeError(DomainError):
    """The query asks for more than its authorisation allows."""

    status = 403
    code = "out-of-scope"
    title = "Query outside its authorisation"

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail, field=field)
        self.field = field


@dataclass(frozen=True)
class Authorisation:
    reference: str
    legal_basis: str
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class Query:
    kind: str
    ip: str | None = None
    port: int | None = None
    at: datetime | None = None
    tenant_id: str | None = None
    peer_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    @property
    def window(self) -> tuple[datetime, datetime]:
        if self.at is not None:
            return self.at, self.at
        assert self.start is not None and self.end is not None
        return self.start, self.end


@dataclass(frozen=True)
class RegulatorRequest:
    request_id: dict[str, str]
    authorisation: Authorisation
    query: Query
    max_hits: int

    @property
    def request_ref(self) -> str:
        r = self.request_id
        return f"{r['country']}/{r['authority']}/{r['number']}"


def _object(field: str, value: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidInput(
            f"{field}.{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(value))
    if missing:
        raise InvalidInput(f"{field}.{missing[0]}", "is required")
    return value


def _ip(field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(field, "must be an IP address string")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError as exc:
        raise InvalidInput(field, f"{value!r} is not an IP address") from exc


def _uuid(field: str, value: Any) -> str:
    if not isinstance(value, str) or not ids.is_id(value):
        raise InvalidInput(field, "must be an id as returned by the API (lower-case UUID)")
    return value


def parse_request(
    doc: dict[str, Any], *, default_max_hits: int, max_hits_limit: int
) -> RegulatorRequest:
    """Validate shape and types; `check_scope` then compares it with the authorisation."""
    _object("body", doc, _TOP, _TOP - {"max_hits"})
    rid = _object("request_id", doc["request_id"], _REQUEST_ID, _REQUEST_ID)
    request_id = {
        "country": validation.country("request_id.country", rid["country"]),
        "authority": validation.reference("request_id.authority", rid["authority"], max_len=64),
        "number": validation.reference("request_id.number", rid["number"], max_len=64),
    }
    auth = _object("authorisation", doc["authorisation"], _AUTHORISATION, _AUTHORISATION)
    authorisation = Authorisation(
        reference=validation.reference("authorisation.reference", auth["reference"], max_len=128),
        legal_basis=validation.text("authorisation.legal_basis", auth["legal_basis"], max_len=200),
        valid_from=validation.timestamp("authorisation.valid_from", auth["valid_from"]),
        valid_until=validation.timestamp("authorisation.valid_until", auth["valid_until"]),
    )
    if authorisation.valid_until <= authorisation.valid_from:
        raise InvalidInput("authorisation.valid_until", "must be after valid_from")
    raw_query = doc["query"]
    if not isinstance(raw_query, dict) or raw_query.get("kind") not in KINDS:
        raise InvalidInput("query.kind", f"must be one of {', '.join(KINDS)}")
    kind = raw_query["kind"]
    allowed, required = QUERY_FIELDS[kind]
    q = _object("query", raw_query, allowed, required)
    if kind == "attribution.tunnel_ip":
        query = Query(
            kind, ip=_ip("query.ip", q["ip"]), at=validation.timestamp("query.at", q["at"])
        )
    elif kind in ("attribution.endpoint", "attribution.egress"):
        port = q.get("port")
        if port is not None:
            port = validation.integer("query.port", port, minimum=1, maximum=65535)
        query = Query(
            kind,
            ip=_ip("query.ip", q["ip"]),
            port=port,
            at=validation.timestamp("query.at", q["at"]),
        )
    else:
        start = validation.timestamp("query.from", q["from"])
        end = validation.timestamp("query.to", q["to"])
        if end <= start:
            raise InvalidInput("query.to", "must be after query.from")
        if kind == "activity.tenant":
            query = Query(
                kind, tenant_id=_uuid("query.tenant_id", q["tenant_id"]), start=start, end=end
            )
        else:
            query = Query(kind, peer_id=_uuid("query.peer_id", q["peer_id"]), start=start, end=end)
    max_hits = doc.get("max_hits", default_max_hits)
    if (
        isinstance(max_hits, bool)
        or not isinstance(max_hits, int)
        or not 1 <= max_hits <= max_hits_limit
    ):
        raise InvalidInput("max_hits", f"must be an integer from 1 to {max_hits_limit}")
    return RegulatorRequest(request_id, authorisation, query, max_hits)


def check_scope(request: RegulatorRequest, *, now: datetime) -> None:
    """The query window must lie inside the authorisation, which must be in force now."""
    auth = request.authorisation
    if now < auth.valid_from or now > auth.valid_until:
        raise ScopeError(
            "authorisation",
            f"authorisation {auth.reference} is not in force now "
            f"(valid {validation.rfc3339(auth.valid_from)} to "
            f"{validation.rfc3339(auth.valid_until)})",
        )
    start, end = request.query.window
    if start < auth.valid_from or end > auth.valid_until:
        raise ScopeError(
            "query",
            "the query window must lie inside the authorisation's validity "
            f"({validation.rfc3339(auth.valid_from)} to "
            f"{validation.rfc3339(auth.valid_until)})",
        )
