"""OpenAPI 3.1 document generated from the same route table the app mounts.

Everything an operation can answer is derived from its declaration: its replies, the
problems its authentication, parameters and body can cause (the router enforces exactly
those), and the problems it declares itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.http.problems import CONTENT_TYPE as PROBLEM
from gateway.http.problems import PROBLEM_TYPE_BASE
from gateway.http.routes import Route

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "ops": [{"opsToken": []}],
    "tenant": [{"tenantToken": []}],
    "agent": [{"agentToken": []}],
    "regulator": [{"regulatorSignature": []}],
    "public": [],
}

_TITLES = {
    400: "Invalid input",
    401: "Authentication required",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    410: "Gone",
    413: "Request body too large",
    415: "Unsupported media type",
    503: "Unavailable",
    507: "Insufficient storage",
}

_BEARER_HOWTO = (
    "Send `Authorization: Bearer <token>`. Tokens look like `vgw_<o|t|a>_<12 hex id>_<secret>`. "
)
SECURITY_SCHEMES = {
    "opsToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "vgw_o_<id>_<secret>",
        "description": _BEARER_HOWTO
        + "The first ops token is printed by `vpngw init` (and `./run serve`); more come from "
        "`vpngw token issue-ops`.",
    },
    "tenantToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "vgw_t_<id>_<secret>",
        "description": _BEARER_HOWTO
        + "Provider ops issue a tenant token for a verified tenant with "
        "`POST /ops/v1/tenants/{tenant_id}/tokens` (or `vpngw token issue <tenant id>`); "
        "the secret is shown once.",
    },
    "agentToken": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "vgw_a_<id>_<secret>",
        "description": _BEARER_HOWTO
        + "Registering a gateway (`POST /ops/v1/gateways`, `vpngw gateway add`) returns its "
        "agent token once; it reads only that gateway's state and reports its sessions.",
    },
    "regulatorSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": "RFC 9421 HTTP message signature, label `reg`, Ed25519, tag "
        "`vpngw-regulator-v1`, with Signature-Input and Content-Digest; the key is "
        "registered by provider ops (`POST /ops/v1/regulator-keys`). Use the "
        "`vpngw-regulator` CLI or gateway.regulator.client to sign.",
    },
}

REQUEST_ID_HEADER = {
    "description": "The request's id (yours if you sent a valid X-Request-Id, else the "
    "server's); it is in the server's log line for this request",
    "schema": {"type": "string", "maxLength": 64},
}


def problem_types(route: Route, signature_checks: tuple[str, ...]) -> dict[int, list[str]]:
    """Every problem type an operation can answer with, by status."""
    found: dict[int, list[str]] = {}

    def add(status: int, *codes: str) -> None:
        found.setdefault(status, [])
        found[status] += [c for c in codes if c not in found[status]]

    if route.role is not None:
        add(401, "missing-token", "invalid-token")
        add(403, "wrong-role")
    if route.auth == "regulator":
        add(401, *(f"signature-{check}" for check in signature_checks))
    if route.body is not None or any(
        p.location == "query" or not p.malformed_is_missing for p in route.params
    ):
        add(400, "invalid-input")
    if route.body is not None:
        add(413, "body-too-large")
        add(415, "unsupported-media-type")
    if any(p.location == "path" and p.malformed_is_missing for p in route.params):
        add(404, "not-found")
    for status, codes in route.errors.items():
        add(status, *codes)
    return dict(sorted(found.items()))


def _problem_response(status: int, codes: list[str]) -> dict[str, Any]:
    types = [PROBLEM_TYPE_BASE + c for c in codes]
    return {
        "description": f"{_TITLES.get(status, 'Error')}: " + ", ".join(f"`{t}`" for t in types),
        "headers": {"X-Request-Id": {"$ref": "#/components/headers/XRequestId"}},
        "content": {
            PROBLEM: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "example": {
                    "type": types[0],
                    "title": _TITLES.get(status, "Error"),
                    "status": status,
                    "detail": "what went wrong and what to fix",
                    "request_id": "5f0c2a9e4b7d1c3a",
                },
            }
        },
    }


def _operation(route: Route, signature_checks: tuple[str, ...]) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for reply in route.replies:
        response: dict[str, Any] = {
            "description": reply.description,
            "headers": {
                "X-Request-Id": {"$ref": "#/components/headers/XRequestId"},
                **{name: dict(h) for name, h in reply.headers.items()},
            },
        }
        if reply.content:
            response["content"] = {ct: {"schema": dict(s)} for ct, s in reply.content.items()}
        responses[str(reply.status)] = response
    for status, codes in problem_types(route, signature_checks).items():
        responses.setdefault(str(status), _problem_response(status, codes))
    responses["default"] = _problem_response(500, ["internal-error"])
    responses["default"]["description"] = "Server failure (`urn:vpngw:problem:internal-error`)"
    op: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "tags": [route.auth],
        "security": _SECURITY[route.auth],
        "responses": responses,
    }
    if route.description:
        op["description"] = route.description
    if route.params:
        op["parameters"] = [p.openapi() for p in route.params]
    if route.body is not None:
        media: dict[str, Any] = {"schema": dict(route.body)}
        if route.body_example is not None:
            media["example"] = dict(route.body_example)
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": media},
        }
    return op


def build_openapi(
    routes: list[Route],
    *,
    version: str,
    schemas: Mapping[str, Any],
    signature_checks: tuple[str, ...] = (),
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, signature_checks)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vpngw",
            "version": version,
            "description": "Ops, tenant and regulator APIs of a vpngw gateway, and the agent "
            "protocol between the control plane and `vpngw agent` on each gateway host. Every "
            "error is `application/problem+json` (RFC 9457) with a stable `type` "
            "(`urn:vpngw:problem:<code>`), a `detail` that says what to fix, the `field` at "
            "fault for input errors, and the `request_id` (also in the X-Request-Id header).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": SECURITY_SCHEMES,
            "headers": {"XRequestId": REQUEST_ID_HEADER},
            "schemas": dict(schemas),
        },
    }
