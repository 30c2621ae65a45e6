"""Health, readiness, metrics and an OpenAPI document that matches the mounted routes."""

from __future__ import annotations

import re
from typing import Any

from gateway.web.routes import ROUTES as PAGE_ROUTES
from provisioning.keys import generate_key_pair
from tests.helpers import TENANT, assert_problem, bearer, ops_token, verified_tenant


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


async def test_every_operation_declares_its_replies_and_problems(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            ok = {c: r for c, r in op["responses"].items() if c.startswith("2")}
            if path == "/readyz":
                ok["503"] = op["responses"]["503"]
            assert ok, where
            for code, reply in ok.items():
                assert "X-Request-Id" in reply["headers"], where
                if code == "204":
                    assert "content" not in reply, where
                else:
                    assert reply["content"], where
                    for media in reply["content"].values():
                        schema = media["schema"]
                        assert schema.get("type") or schema.get("$ref"), where
                        if "$ref" in schema:
                            assert schema["$ref"].split("/")[-1] in schemas, where
            for code, reply in op["responses"].items():
                if path == "/readyz" and code == "503":  # a readiness report, not a problem
                    continue
                if code.startswith(("4", "5")) or code == "default":
                    problem = reply["content"]["application/problem+json"]
                    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}, where
                    assert "urn:vpngw:problem:" in reply["description"], where
            if op["security"]:
                assert {"401", "403"} <= set(op["responses"]) or "regulator" in op["tags"], where
            if any(p["in"] == "path" for p in op.get("parameters", [])):
                assert {"400", "404"} & set(op["responses"]), where
    problem = schemas["Problem"]["properties"]
    assert {"type", "title", "status", "detail", "field", "request_id"} <= set(problem)


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = doc["paths"][path][method]
    return op


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].split("/")[-1]]
    return schema


async def test_stated_body_bounds_are_the_enforced_bounds(client: Any) -> None:
    """For each string field with a stated maxLength: that length passes, one more is refused."""
    doc = await (await client.get("/openapi.json")).json()
    ops = await ops_token(client)
    tenant_schema = _resolve(
        doc,
        _operation(doc, "post", "/ops/v1/tenants")["requestBody"]["content"]["application/json"][
            "schema"
        ],
    )
    base = {**TENANT, "registration_number": "RC-B0"}
    for n, (name, prop) in enumerate(sorted(tenant_schema["properties"].items())):
        if "maxLength" in prop and "format" not in prop:
            longest = "A" * prop["maxLength"]
            body = {**base, "registration_number": f"RC-B{n}", name: longest}
            resp = await client.post("/ops/v1/tenants", json=body, headers=bearer(ops))
            assert resp.status == 201, (name, await resp.text())
            body = {**base, "registration_number": f"RC-C{n}", name: longest + "A"}
            resp = await client.post("/ops/v1/tenants", json=body, headers=bearer(ops))
            doc_ = await assert_problem(resp, 400, "invalid-input")
            assert doc_["field"] == name
        if prop.get("type") == "integer":
            for value, ok in ((prop["minimum"], True), (prop["maximum"], True),
                              (prop["minimum"] - 1, False), (prop["maximum"] + 1, False)):
                body = {**base, "registration_number": f"RC-I{n}-{value}", name: value}
                resp = await client.post("/ops/v1/tenants", json=body, headers=bearer(ops))
                assert (resp.status == 201) is ok, (name, value, await resp.text())

    _, tenant = await verified_tenant(client, ops, registration_number="RC-P")
    peer_schema = _resolve(
        doc,
        _operation(doc, "post", "/v1/peers")["requestBody"]["content"]["application/json"][
            "schema"
        ],
    )
    name_max = peer_schema["properties"]["name"]["maxLength"]
    resp = await client.post("/v1/peers", json={"name": "n" * name_max}, headers=bearer(tenant))
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        "/v1/peers", json={"name": "n" * (name_max + 1)}, headers=bearer(tenant)
    )
    assert (await assert_problem(resp, 400, "invalid-input"))["field"] == "name"
    key_pattern = re.compile(peer_schema["properties"]["public_key"]["pattern"])
    for _ in range(20):
        assert key_pattern.fullmatch(generate_key_pair().public_key)
    # The one non-canonical spelling of a key the pattern rules out is refused too.
    canonical = generate_key_pair().public_key
    twisted = canonical[:42] + chr(ord(canonical[42]) + 1) + "="
    if twisted[42].isalnum() and not key_pattern.fullmatch(twisted):
        resp = await client.post(
            "/v1/peers", json={"name": "t", "public_key": twisted}, headers=bearer(tenant)
        )
        assert (await assert_problem(resp, 400, "invalid-input"))["field"] == "public_key"


async def test_stated_parameter_bounds_are_the_enforced_bounds(client: Any) -> None:
    doc = await (await client.get("/openapi.json")).json()
    ops = await ops_token(client)
    _, tenant = await verified_tenant(client, ops)
    tokens = {"ops": ops, "tenant": tenant}
    checked = 0
    for path, operations in doc["paths"].items():
        if "{" in path or "get" not in operations:
            continue
        op = operations["get"]
        token = tokens.get(op["tags"][0])
        headers = bearer(token) if token else {}
        for param in op.get("parameters", []):
            schema, name = param["schema"], param["name"]
            other = {"from": "to=1&", "to": "from=1&"}.get(name, "")
            if schema.get("type") == "integer":
                for value, ok in ((schema["minimum"], True), (schema["maximum"], True),
                                  (schema["minimum"] - 1, False), (schema["maximum"] + 1, False)):
                    resp = await client.get(f"{path}?{other}{name}={value}", headers=headers)
                    if ok:
                        # In range: the parameter parser accepts it (a proof may still be
                        # refused for the tree's current size).
                        if resp.status == 400:
                            detail = (await resp.json())["detail"]
                            assert not detail.startswith("query parameter"), (path, detail)
                    else:
                        problem = await assert_problem(resp, 400, "invalid-input")
                        assert problem["field"] == name, (path, name, value)
                    checked += 1
            for value in schema.get("enum", []):
                resp = await client.get(f"{path}?{name}={value}", headers=headers)
                assert resp.status == 200, (path, name, value, await resp.text())
                checked += 1
            if "pattern" in schema:
                resp = await client.get(f"{path}?{name}=%00", headers=headers)
                problem = await assert_problem(resp, 400, "invalid-input")
                assert problem["field"] == name
                checked += 1
    assert checked >= 20
