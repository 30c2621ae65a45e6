"""Route table with the facts OpenAPI needs; handlers register here, the app mounts them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Schema = Mapping[str, Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    auth: str  # "ops", "tenant", "agent", "regulator" or "public"
    body: Schema | None = None  # JSON schema of the request object
    required: tuple[str, ...] = ()
    responses: Mapping[int, str] = field(default_factory=lambda: {200: "OK"})
    query: Mapping[str, Schema] = field(default_factory=dict)
    produces: tuple[str, ...] = ("application/json",)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset((self.body or {}).get("properties", {}))


def obj(properties: Mapping[str, Schema]) -> Schema:
    return {"type": "object", "additionalProperties": False, "properties": dict(properties)}


STR = {"type": "string"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}


def mount(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
