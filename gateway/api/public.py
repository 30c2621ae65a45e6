"""Unauthenticated service endpoints: liveness, readiness, metrics, OpenAPI."""

from __future__ import annotations

from aiohttp import web

from gateway.http import appkeys
from gateway.http.routes import Reply, Route, json_reply, ref
from provisioning.validation import rfc3339


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    runtime = request.app[appkeys.RUNTIME]
    components = {
        name: {"ok": c.ok, "detail": c.detail, "since": rfc3339(c.since) if c.since else None}
        for name, c in sorted(runtime.components.items())
    }
    ready = runtime.ready
    doc: dict[str, object] = {"status": "ready" if ready else "not ready",
                              "components": components}
    doc.update({name: read() for name, read in sorted(runtime.informational.items())})
    return web.json_response(
        doc,
        status=200 if ready else 503,
    )


async def metrics(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[appkeys.METRICS].render(),
        content_type="text/plain",
        charset="utf-8",
    )


OPENAPI: web.AppKey[dict[str, object]] = web.AppKey("openapi", dict)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


ROUTES = [
    Route(
        "GET", "/healthz", healthz, "Liveness", "public",
        replies=(json_reply(200, "Alive", ref("Health")),),
    ),
    Route(
        "GET",
        "/readyz",
        readyz,
        "Readiness of the database and background components",
        "public",
        replies=(
            json_reply(200, "Ready", ref("Readiness")),
            json_reply(503, "Not ready: see the failing component", ref("Readiness")),
        ),
    ),
    Route(
        "GET", "/metrics", metrics, "Prometheus metrics", "public",
        replies=(Reply(200, "Prometheus text format", {"text/plain": {"type": "string"}}),),
    ),
    Route(
        "GET", "/openapi.json", openapi, "This API's OpenAPI 3.1 document", "public",
        replies=(json_reply(200, "OpenAPI 3.1", {"type": "object"}),),
    ),
]
