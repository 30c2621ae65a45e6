"""The regulator's query document (DESIGN section 6): shape, types and scope."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.regulator.request import (
    KINDS,
    RegulatorRequest,
    ScopeError,
    check_scope,
    parse_request,
)
from provisioning.errors import InvalidInput

TENANT = "01a22ad1-56ef-77fe-b840-fb5550ada09e"
PEER = "01a22ad1-5723-77c5-a4dc-35765eb4b070"
NOW = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)

QUERIES: dict[str, dict[str, Any]] = {
    "attribution.tunnel_ip": {"kind": "attribution.tunnel_ip", "ip": "10.100.0.7",
                              "at": "2026-11-30T03:00:00Z"},
    "attribution.endpoint": {"kind": "attribution.endpoint", "ip": "203.0.113.9", "port": 51820,
                             "at": "2026-11-30T03:00:00Z"},
    "activity.tenant": {"kind": "activity.tenant", "tenant_id": TENANT,
                        "from": "2026-11-29T00:00:00Z", "to": "2026-11-30T00:00:00Z"},
    "activity.peer": {"kind": "activity.peer", "peer_id": PEER,
                      "from": "2026-11-29T00:00:00Z", "to": "2026-11-30T00:00:00Z"},
    "attribution.egress": {"kind": "attribution.egress", "ip": "203.0.113.7", "port": 40412,
                           "at": "2026-11-30T03:00:00Z"},
}


def doc(kind: str = "attribution.tunnel_ip", **top: Any) -> dict[str, Any]:
    return {
        "request_id": {"country": "PK", "authority": "PTA", "number": "2026-000123"},
        "authorisation": {"reference": "PTA/LI/2026/0042", "legal_basis": "PECA 2016 s.32",
                          "valid_from": "2026-11-01T00:00:00Z",
                          "valid_until": "2026-12-31T00:00:00Z"},
        "query": copy.deepcopy(QUERIES[kind]),
        **top,
    }


def parse(document: dict[str, Any]) -> RegulatorRequest:
    return parse_request(document, default_max_hits=100, max_hits_limit=1000)


def refused(document: dict[str, Any], field: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse(document)
    assert caught.value.field == field, caught.value.detail
    return caught.value


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_parses(kind: str) -> None:
    req = parse(doc(kind))
    assert req.query.kind == kind
    assert req.max_hits == 100
    assert req.request_ref == "PK/PTA/2026-000123"
    assert req.authorisation.valid_from == datetime(2026, 11, 1, tzinfo=UTC)
    check_scope(req, now=NOW)


def test_fields_are_normalised() -> None:
    d = doc("attribution.endpoint")
    d["query"].update(ip="2001:DB8:0::7", at="2026-11-30T08:00:00+05:00")
    req = parse(d)
    assert req.query.ip == "2001:db8::7"
    assert req.query.at == datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    assert req.query.window == (req.query.at, req.query.at)
    no_port = doc("attribution.endpoint")
    del no_port["query"]["port"]
    assert parse(no_port).query.port is None
    assert parse(doc(max_hits=1000)).max_hits == 1000
    window = parse(doc("activity.peer")).query.window
    assert window == (datetime(2026, 11, 29, tzinfo=UTC), datetime(2026, 11, 30, tzinfo=UTC))


@pytest.mark.parametrize(("change", "field"), [
    (lambda d: d.pop("authorisation"), "body.authorisation"),
    (lambda d: d.pop("request_id"), "body.request_id"),
    (lambda d: d.pop("query"), "body.query"),
    (lambda d: d.update(extra=1), "body.extra"),
    (lambda d: d["request_id"].pop("number"), "request_id.number"),
    (lambda d: d["request_id"].update(country="Pakistan"), "request_id.country"),
    (lambda d: d["authorisation"].update(scope="all"), "authorisation.scope"),
    (lambda d: d["authorisation"].pop("legal_basis"), "authorisation.legal_basis"),
    (lambda d: d["authorisation"].update(valid_until="2026-10-01T00:00:00Z"),
     "authorisation.valid_until"),
    (lambda d: d["authorisation"].update(valid_from="yesterday"), "authorisation.valid_from"),
    (lambda d: d["authorisation"].update(valid_from="2026-11-01T00:00:00"),
     "authorisation.valid_from"),
    (lambda d: d.update(authorisation="PTA/LI/1"), "authorisation"),
    (lambda d: d["query"].update(kind="attribution.everything"), "query.kind"),
    (lambda d: d.update(query=[]), "query.kind"),
    (lambda d: d["query"].update(ip="10.100.0.300"), "query.ip"),
    (lambda d: d["query"].update(ip=167772167), "query.ip"),
    (lambda d: d["query"].pop("at"), "query.at"),
    (lambda d: d["query"].update(port=51820), "query.port"),
    (lambda d: d["query"].update(tenant_id=TENANT), "query.tenant_id"),
    (lambda d: d.update(max_hits=0), "max_hits"),
    (lambda d: d.update(max_hits=1001), "max_hits"),
    (lambda d: d.update(max_hits=True), "max_hits"),
    (lambda d: d.update(max_hits="10"), "max_hits"),
    (lambda d: d.update(max_hits=10.0), "max_hits"),
])
def test_malformed_documents_name_the_field(change: Any, field: str) -> None:
    d = doc()
    change(d)
    refused(d, field)


@pytest.mark.parametrize(("kind", "change", "field"), [
    ("attribution.endpoint", {"port": 0}, "query.port"),
    ("attribution.endpoint", {"port": 65536}, "query.port"),
    ("attribution.endpoint", {"port": "51820"}, "query.port"),
    ("activity.tenant", {"tenant_id": "ACME"}, "query.tenant_id"),
    ("activity.tenant", {"tenant_id": TENANT.upper()}, "query.tenant_id"),
    ("activity.tenant", {"to": "2026-11-29T00:00:00Z"}, "query.to"),
    ("activity.peer", {"peer_id": None}, "query.peer_id"),
    ("activity.peer", {"from": 1764000000}, "query.from"),
    ("activity.peer", {"at": "2026-11-30T03:00:00Z"}, "query.at"),
])
def test_kind_specific_fields(kind: str, change: dict[str, Any], field: str) -> None:
    d = doc(kind)
    d["query"].update(change)
    refused(d, field)


def test_unknown_and_missing_query_fields_are_refused_per_kind() -> None:
    d = doc("activity.tenant")
    del d["query"]["to"]
    assert "required" in refused(d, "query.to").detail


@pytest.mark.parametrize(("kind", "changes", "field"), [
    ("attribution.tunnel_ip", {"at": "2026-10-31T23:59:59Z"}, "query"),
    ("attribution.tunnel_ip", {"at": "2026-12-31T00:00:01Z"}, "query"),
    ("activity.tenant", {"from": "2026-10-01T00:00:00Z"}, "query"),
    ("activity.peer", {"to": "2027-01-01T00:00:00Z"}, "query"),
])
def test_windows_must_lie_inside_the_authorisation(
    kind: str, changes: dict[str, Any], field: str
) -> None:
    d = doc(kind)
    d["query"].update(changes)
    with pytest.raises(ScopeError) as caught:
        check_scope(parse(d), now=NOW)
    assert caught.value.field == field
    assert "inside the authorisation" in caught.value.detail


def test_window_edges_are_inside() -> None:
    d = doc("activity.tenant")
    d["query"].update({"from": "2026-11-01T00:00:00Z", "to": "2026-12-31T00:00:00Z"})
    check_scope(parse(d), now=NOW)


@pytest.mark.parametrize("now", [datetime(2026, 10, 31, 23, 59, tzinfo=UTC),
                                 datetime(2026, 12, 31, 0, 0, 1, tzinfo=UTC)])
def test_an_authorisation_not_in_force_is_out_of_scope(now: datetime) -> None:
    with pytest.raises(ScopeError) as caught:
        check_scope(parse(doc()), now=now)
    assert caught.value.field == "authorisation"
    assert "not in force" in caught.value.detail
