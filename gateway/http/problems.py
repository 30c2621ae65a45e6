"""RFC 9457 problem details: one exception type carries status, stable type and detail."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

PROBLEM_TYPE_BASE = "urn:vpngw:problem:"
CONTENT_TYPE = "application/problem+json"


class Problem(Exception):
    """Raise anywhere in a handler; the error middleware renders it."""

    def __init__(self, status: int, code: str, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": PROBLEM_TYPE_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc


def problem_response(problem: Problem, *, request_id: str | None = None) -> web.Response:
    doc = problem.body()
    if request_id:
        doc["request_id"] = request_id
    return web.Response(
        status=problem.status,
        body=json.dumps(doc).encode(),
        content_type=CONTENT_TYPE,
        headers=problem.headers,
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
