"""Route table with the facts OpenAPI needs; handlers register here, the app mounts them.

What a route declares is also what the server enforces: `mount` authenticates the
caller for `auth` and parses every declared parameter before the handler runs, and
`gateway.http.openapi` describes the same declarations.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.http.auth import require
from gateway.http.params import Param, parse_all
from provisioning.tokens import Role

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Reply:
    """One success response: its status, and its body by media type (none for a 204)."""

    status: int
    description: str
    content: Mapping[str, Schema] = field(default_factory=dict)
    headers: Mapping[str, Schema] = field(default_factory=dict)


def json_reply(
    status: int, description: str, schema: Schema, *, headers: Mapping[str, Schema] | None = None
) -> Reply:
    return Reply(status, description, {"application/json": schema}, headers or {})


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: str  # "ops", "tenant", "agent", "regulator" or "public"
    body: Schema | None = None  # JSON schema of the request object
    body_required: bool = True
    replies: tuple[Reply, ...] = ()
    params: tuple[Param[Any], ...] = ()
    # Problem types this operation can answer with, beyond those its auth, parameters and
    # body imply (see gateway.http.openapi), by status.
    errors: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""
    body_example: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not any(200 <= reply.status < 300 for reply in self.replies):
            raise ValueError(f"{self.method} {self.path}: declare its success reply")
        declared = {p.name for p in self.params if p.location == "path"}
        in_path = set(re.findall(r"{(\w+)}", self.path))
        if declared != in_path:
            raise ValueError(f"{self.method} {self.path}: declare path parameters {in_path}")

    @property
    def role(self) -> Role | None:
        return Role(self.auth) if self.auth in ("ops", "tenant", "agent") else None


def obj(properties: Mapping[str, Schema], *required: str) -> Schema:
    doc: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": dict(properties),
    }
    if required:
        doc["required"] = list(required)
    return doc


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


NO_STORE = {
    "Cache-Control": {
        "description": "no-store: the body holds a secret or a config",
        "schema": {"type": "string"},
    }
}


def location(what: str) -> dict[str, Schema]:
    return {"Location": {"description": f"The new {what}'s URL", "schema": {"type": "string"}}}


def _bind(route: Route) -> Handler:
    role = route.role

    async def handle(request: web.Request) -> web.StreamResponse:
        # Authentication first: a caller without a valid token learns nothing about
        # which of its parameters would have been accepted.
        if role is not None:
            await require(request, role)
        parse_all(request, route.params)
        return await route.handler(request)

    handle.__name__ = route.handler.__name__
    return handle


def mount(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, _bind(route))
