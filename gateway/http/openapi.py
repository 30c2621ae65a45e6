"""OpenAPI 3.1 document generated from the same route table the app mounts."""

from __future__ import annotations

import re
from typing import Any

from gateway.http.problems import CONTENT_TYPE as PROBLEM
from gateway.http.routes import Route

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "ops": [{"bearer": []}],
    "tenant": [{"bearer": []}],
    "agent": [{"bearer": []}],
    "regulator": [{"httpsig": []}],
    "public": [],
}


def build_openapi(routes: list[Route], *, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.handler.__name__,
            "tags": [route.auth],
            "security": _SECURITY[route.auth],
            "responses": {
                str(code): {
                    "description": text,
                    "content": {ct: {} for ct in (route.produces if code < 300 else ())},
                }
                for code, text in route.responses.items()
            },
        }
        op["responses"]["default"] = {
            "description": "Error (RFC 9457 problem details)",
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        params += [
            {"name": n, "in": "query", "required": False, "schema": dict(s)}
            for n, s in route.query.items()
        ]
        if params:
            op["parameters"] = params
        if route.body is not None:
            schema = dict(route.body)
            if route.required:
                schema["required"] = list(route.required)
            op["requestBody"] = {
                "required": bool(route.required),
                "content": {"application/json": {"schema": schema}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "vpngw",
            "version": version,
            "description": "Ops, tenant and regulator APIs of a vpngw gateway, and the agent "
            "protocol between the control plane and `vpngw agent` on each gateway host.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "httpsig": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Signature",
                    "description": "RFC 9421 signature, profile vpngw-regulator-v1",
                },
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                    },
                    "required": ["type", "title", "status", "detail"],
                }
            },
        },
    }
