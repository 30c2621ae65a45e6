"""RFC 9457 problem details: how any DomainError (status, type, title, detail) goes on the wire."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from provisioning.errors import DomainError

PROBLEM_TYPE_BASE = "urn:vpngw:problem:"
CONTENT_TYPE = "application/problem+json"


class Problem(DomainError):
    """A one-off refusal raised in a handler; a recurring one deserves its own DomainError class."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.status = status
        self.code = code
        self.title = title


def problem_body(error: DomainError) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }
    doc.update(error.extra)
    return doc


def problem_response(error: DomainError, *, request_id: str | None = None) -> web.Response:
    doc = problem_body(error)
    if request_id:
        doc["request_id"] = request_id
    return web.Response(
        status=error.status,
        body=json.dumps(doc).encode(),
        content_type=CONTENT_TYPE,
        headers=error.headers,
    )


def bad_request(detail: str, *, field: str | None = None) -> Problem:
    extra = {"field": field} if field else {}
    return Problem(400, "invalid-input", "Invalid input", detail, **extra)


def unauthorized(detail: str, *, code: str = "unauthorized") -> Problem:
    problem = Problem(401, code, "Authentication required", detail)
    problem.headers["WWW-Authenticate"] = 'Bearer realm="vpngw"'
    return problem


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", "Not allowed", detail)


def not_found(detail: str) -> Problem:
    return Problem(404, "not-found", "Not found", detail)
