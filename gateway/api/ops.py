"""Ops API (/ops/v1): tenant onboarding, verification, suspension, tokens."""

from __future__ import annotations

from aiohttp import web

from gateway.api.views import page, peer_view, tenant_view, token_view, transition_view
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import query_int, read_json
from gateway.http.problems import bad_request
from gateway.http.routes import INT, STR, Route, obj
from provisioning import peers, tenants, tokens, validation
from provisioning.tenants import NewTenant, TenantStatus
from provisioning.tokens import Role

TENANT_FIELDS = {
    "legal_name": STR,
    "registration_number": STR,
    "tax_id": STR,
    "country": STR,
    "contact_email": STR,
    "max_peers": INT,
}


async def create_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed=TENANT_FIELDS)
    settings = request.app[appkeys.SETTINGS]
    new = NewTenant.parse(body, default_max_peers=settings.tenants.default_max_peers)
    tenant = await request.app[appkeys.COMMANDS].create_tenant(new, actor=who.actor)
    return web.json_response(
        tenant_view(tenant), status=201, headers={"Location": f"/ops/v1/tenants/{tenant.id}"}
    )


async def list_tenants(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    limit = query_int(request, "limit", default=50, minimum=1, maximum=500)
    status = request.query.get("status")
    if status is not None and status not in TenantStatus.__members__.values():
        raise bad_request(
            f"status must be one of {', '.join(s.value for s in TenantStatus)}", field="status"
        )
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await tenants.list_tenants(
            conn,
            limit=limit,
            after=request.query.get("after"),
            status=TenantStatus(status) if status else None,
        )
    return web.json_response(page([tenant_view(t) for t in found], limit=limit))


async def get_tenant(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    tenant_id = request.match_info["tenant_id"]
    async with request.app[appkeys.DATABASE].read() as conn:
        tenant = await tenants.get_tenant(conn, tenant_id)
        history = await tenants.list_transitions(conn, tenant_id)
        active = await tenants.count_active_peers(conn, tenant_id)
        token_list = await tokens.list_tokens(conn, tenant_id=tenant_id)
    return web.json_response(
        {
            **tenant_view(tenant),
            "active_peers": active,
            "history": [transition_view(t) for t in history],
            "tokens": [token_view(t) for t in token_list],
        }
    )


async def verify_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"evidence_reference", "note"})
    evidence = validation.reference("evidence_reference", body.get("evidence_reference"))
    note = body.get("note")
    if note is not None:
        note = validation.text("note", note, max_len=500)
    tenant = await request.app[appkeys.COMMANDS].verify_tenant(
        request.match_info["tenant_id"], evidence_reference=evidence, note=note, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


def _reason(body: dict[str, object]) -> str:
    return validation.text("reason", body.get("reason"), max_len=500)


async def suspend_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    reason = _reason(await read_json(request, allowed={"reason"}))
    tenant = await request.app[appkeys.COMMANDS].suspend_tenant(
        request.match_info["tenant_id"], reason=reason, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


async def reinstate_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    reason = _reason(await read_json(request, allowed={"reason"}))
    tenant = await request.app[appkeys.COMMANDS].reinstate_tenant(
        request.match_info["tenant_id"], reason=reason, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


async def terminate_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    reason = _reason(await read_json(request, allowed={"reason"}))
    tenant = await request.app[appkeys.COMMANDS].terminate_tenant(
        request.match_info["tenant_id"], reason=reason, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


async def issue_tenant_token(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"label"}, optional=True)
    label = validation.text("label", body.get("label", "tenant api"))
    issued = await request.app[appkeys.COMMANDS].issue_tenant_token(
        request.match_info["tenant_id"], label=label, actor=who.actor
    )
    return web.json_response(
        {
            "id": issued.token_id,
            "token": issued.secret,
            "role": issued.role.value,
            "tenant_id": issued.tenant_id,
            "label": issued.label,
        },
        status=201,
    )


async def revoke_token(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    info = await request.app[appkeys.COMMANDS].revoke_token(
        request.match_info["token_id"], actor=who.actor
    )
    return web.json_response(token_view(info))


async def list_tenant_peers(request: web.Request) -> web.Response:
    """A tenant's peers as ops see them, with the egress block each one's traffic leaves from."""
    await require(request, Role.OPS)
    tenant_id = request.match_info["tenant_id"]
    limit = query_int(request, "limit", default=50, minimum=1, maximum=500)
    status = request.query.get("status")
    if status is not None and status not in {"active", "revoked", "expired"}:
        raise bad_request("status must be active, revoked or expired", field="status")
    async with request.app[appkeys.DATABASE].read() as conn:
        await tenants.get_tenant(conn, tenant_id)  # 404 for an unknown tenant
        found = await peers.list_peers(
            conn, tenant_id, limit=limit, after=request.query.get("after"), status=status
        )
    plan = request.app.get(appkeys.EGRESS)
    egress = plan.egress if plan is not None else None
    return web.json_response(page([peer_view(p, egress=egress) for p in found], limit=limit))


async def get_egress(request: web.Request) -> web.Response:
    """The egress mapping in force here (what the last `egress.configured` logged)."""
    await require(request, Role.OPS)
    plan = request.app.get(appkeys.EGRESS)
    if plan is None:
        return web.json_response({"enabled": False})
    e = plan.egress
    return web.json_response(
        {
            "enabled": True,
            "interface": plan.interface,
            **e.event_fields(),
            "blocks_per_address": e.blocks_per_address,
            "capacity": e.capacity,
        }
    )


ROUTES = [
    Route(
        "POST",
        "/ops/v1/tenants",
        create_tenant,
        "Onboard a commercial tenant (pending)",
        "ops",
        body=obj(TENANT_FIELDS),
        required=("legal_name", "registration_number", "tax_id", "country", "contact_email"),
        responses={201: "Tenant created"},
    ),
    Route(
        "GET",
        "/ops/v1/tenants",
        list_tenants,
        "List tenants (paginated by id)",
        "ops",
        query={"limit": INT, "after": STR, "status": STR},
    ),
    Route(
        "GET",
        "/ops/v1/tenants/{tenant_id}",
        get_tenant,
        "One tenant with its state history and tokens",
        "ops",
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/verification",
        verify_tenant,
        "Verify a pending tenant's papers",
        "ops",
        body=obj({"evidence_reference": STR, "note": STR}),
        required=("evidence_reference",),
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/suspension",
        suspend_tenant,
        "Suspend a tenant; its tunnels go down",
        "ops",
        body=obj({"reason": STR}),
        required=("reason",),
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/reinstatement",
        reinstate_tenant,
        "Reinstate a suspended tenant",
        "ops",
        body=obj({"reason": STR}),
        required=("reason",),
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/termination",
        terminate_tenant,
        "Terminate a tenant: peers revoked, addresses released, tokens revoked",
        "ops",
        body=obj({"reason": STR}),
        required=("reason",),
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/tokens",
        issue_tenant_token,
        "Issue a tenant API token (shown once)",
        "ops",
        body=obj({"label": STR}),
        responses={201: "Token issued"},
    ),
    Route("DELETE", "/ops/v1/tokens/{token_id}", revoke_token, "Revoke any token", "ops"),
    Route(
        "GET",
        "/ops/v1/tenants/{tenant_id}/peers",
        list_tenant_peers,
        "A tenant's peers, each with its egress address and port block (paginated by id)",
        "ops",
        query={"limit": INT, "after": STR, "status": STR},
    ),
    Route(
        "GET",
        "/ops/v1/egress",
        get_egress,
        "The egress mapping in force: addresses, ports, block size, capacity",
        "ops",
    ),
]
