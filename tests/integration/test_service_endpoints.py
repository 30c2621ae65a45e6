"""Health, readiness, metrics and an OpenAPI document that matches the mounted routes."""

from __future__ import annotations

import re
from typing import Any

from gateway.web.routes import ROUTES as PAGE_ROUTES
from tests.helpers import bearer, ops_token


async def test_openapi_matches_routes(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    mounted = set()
    pages = {handler for _method, _path, handler in PAGE_ROUTES}  # HTML for people, not the API
    for route in client.app.router.routes():
        if route.method == "HEAD" or route.handler in pages:
            continue
        info = route.resource.get_info()
        mounted.add((route.method, info.get("formatter") or info.get("path")))
    assert documented == mounted
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == names, path
            assert "default" in op["responses"]


async def test_health_ready_metrics(client: Any) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["components"]["database"]["ok"]
    ops = await ops_token(client)
    await client.get("/ops/v1/tenants", headers=bearer(ops))
    text = await (await client.get("/metrics")).text()
    assert 'vpngw_http_requests_total{method="GET",route="/ops/v1/tenants",status="200"} 1' in text
    assert "vpngw_http_request_duration_seconds_bucket" in text


async def test_request_id_is_echoed(client: Any) -> None:
    resp = await client.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert resp.headers["X-Request-Id"] == "abc-123"
    resp = await client.get("/healthz", headers={"X-Request-Id": "x" * 200})
    assert len(resp.headers["X-Request-Id"]) == 16
