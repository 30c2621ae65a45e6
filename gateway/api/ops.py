"""Ops API (/ops/v1): tenant onboarding, verification, suspension, tokens."""

from __future__ import annotations

from aiohttp import web

from gateway.api import schemas
from gateway.api.views import page, peer_view, tenant_view, token_view, transition_view
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import read_json
from gateway.http.params import Choice, Identifier, WholeNumber
from gateway.http.routes import Route, Schema, json_reply, location, obj, ref
from provisioning import ids, peers, tenants, tokens, validation
from provisioning.tenants import NewTenant, TenantStatus
from provisioning.tokens import Role

TENANT_FIELDS = frozenset(schemas.NEW_TENANT["properties"])

TENANT_ID = Identifier("tenant_id", ids.UUID, location="path", description="The tenant's id")
TOKEN_ID = Identifier(
    "token_id", tokens.TOKEN_ID, location="path", description="The token's id (not its secret)"
)
LIMIT = WholeNumber(
    "limit", minimum=1, maximum=500, default=50, description="Page size (at most 500)"
)
AFTER = Identifier(
    "after", ids.UUID, description="The `next` value of the previous page: items after this id"
)
PEER_STATUS = Choice("status", peers.STATUSES, description="Only peers in this state")
TENANT_STATUS = Choice(
    "status", tuple(s.value for s in TenantStatus), description="Only tenants in this state"
)


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
    limit = LIMIT.value(request)
    status = TENANT_STATUS.optional(request)
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await tenants.list_tenants(
            conn,
            limit=limit,
            after=AFTER.optional(request),
            status=TenantStatus(status) if status else None,
        )
    return web.json_response(page([tenant_view(t) for t in found], limit=limit))


async def get_tenant(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    tenant_id = TENANT_ID.value(request)
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
        note = validation.text("note", note, max_len=tenants.REASON_MAX)
    tenant = await request.app[appkeys.COMMANDS].verify_tenant(
        TENANT_ID.value(request), evidence_reference=evidence, note=note, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


def _reason(body: dict[str, object]) -> str:
    return validation.text("reason", body.get("reason"), max_len=tenants.REASON_MAX)


async def suspend_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    reason = _reason(await read_json(request, allowed={"reason"}))
    tenant = await request.app[appkeys.COMMANDS].suspend_tenant(
        TENANT_ID.value(request), reason=reason, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


async def reinstate_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    reason = _reason(await read_json(request, allowed={"reason"}))
    tenant = await request.app[appkeys.COMMANDS].reinstate_tenant(
        TENANT_ID.value(request), reason=reason, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


async def terminate_tenant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    reason = _reason(await read_json(request, allowed={"reason"}))
    tenant = await request.app[appkeys.COMMANDS].terminate_tenant(
        TENANT_ID.value(request), reason=reason, actor=who.actor
    )
    return web.json_response(tenant_view(tenant))


async def issue_tenant_token(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"label"}, optional=True)
    label = validation.text("label", body.get("label", "tenant api"))
    issued = await request.app[appkeys.COMMANDS].issue_tenant_token(
        TENANT_ID.value(request), label=label, actor=who.actor
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
        headers={"Cache-Control": "no-store"},  # the token is shown once, here
    )


async def revoke_token(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    info = await request.app[appkeys.COMMANDS].revoke_token(
        TOKEN_ID.value(request), actor=who.actor
    )
    return web.json_response(token_view(info))


async def list_tenant_peers(request: web.Request) -> web.Response:
    """A tenant's peers as ops see them, with the egress block each one's traffic leaves from."""
    await require(request, Role.OPS)
    tenant_id = TENANT_ID.value(request)
    limit = LIMIT.value(request)
    async with request.app[appkeys.DATABASE].read() as conn:
        await tenants.get_tenant(conn, tenant_id)  # 404 for an unknown tenant
        found = await peers.list_peers(
            conn,
            tenant_id,
            limit=limit,
            after=AFTER.optional(request),
            status=PEER_STATUS.optional(request),
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
    held = request.app.get(appkeys.EGRESS_HELD)
    return web.json_response(
        {
            "enabled": True,
            "interface": plan.interface,
            **e.event_fields(),
            "blocks_per_address": e.blocks_per_address,
            "capacity": e.capacity,
            **({"held": held.event_fields()} if held is not None else {}),
        }
    )


_TENANT = ref("Tenant")
_TRANSITION_ERRORS = {409: ("illegal-transition",)}


def _reason_body(what: str) -> Schema:
    return obj({"reason": {**schemas.REASON, "description": what}}, "reason")


ROUTES = [
    Route(
        "POST",
        "/ops/v1/tenants",
        create_tenant,
        "Onboard a commercial tenant (pending)",
        "ops",
        body=ref("NewTenant"),
        body_example={
            "legal_name": "Acme Bank Ltd",
            "registration_number": "RC-123",
            "tax_id": "NTN-42",
            "country": "PK",
            "contact_email": "it@acme.example",
            "max_peers": 50,
        },
        replies=(json_reply(201, "Tenant created (pending)", _TENANT, headers=location("tenant")),),
        errors={409: ("duplicate-tenant",)},
    ),
    Route(
        "GET",
        "/ops/v1/tenants",
        list_tenants,
        "List tenants (paginated by id)",
        "ops",
        params=(LIMIT, AFTER, TENANT_STATUS),
        replies=(json_reply(200, "A page of tenants", ref("TenantPage")),),
    ),
    Route(
        "GET",
        "/ops/v1/tenants/{tenant_id}",
        get_tenant,
        "One tenant with its state history and tokens",
        "ops",
        params=(TENANT_ID,),
        replies=(json_reply(200, "The tenant", ref("TenantDetail")),),
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/verification",
        verify_tenant,
        "Verify a pending tenant's papers",
        "ops",
        params=(TENANT_ID,),
        body=obj(
            {
                "evidence_reference": schemas.ascii_reference(
                    200, "Where the checked papers are filed, e.g. KYC-2026-0042"
                ),
                "note": schemas.text(tenants.REASON_MAX),
            },
            "evidence_reference",
        ),
        body_example={"evidence_reference": "KYC-2026-0042"},
        replies=(json_reply(200, "Verified", _TENANT),),
        errors=_TRANSITION_ERRORS,
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/suspension",
        suspend_tenant,
        "Suspend a tenant; its tunnels go down",
        "ops",
        params=(TENANT_ID,),
        body=_reason_body("Why, e.g. unpaid invoice"),
        replies=(json_reply(200, "Suspended", _TENANT),),
        errors=_TRANSITION_ERRORS,
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/reinstatement",
        reinstate_tenant,
        "Reinstate a suspended tenant",
        "ops",
        params=(TENANT_ID,),
        body=_reason_body("Why the suspension ends"),
        replies=(json_reply(200, "Verified again", _TENANT),),
        errors=_TRANSITION_ERRORS,
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/termination",
        terminate_tenant,
        "Terminate a tenant: peers revoked, addresses released, tokens revoked",
        "ops",
        params=(TENANT_ID,),
        body=_reason_body("Why the tenant is terminated (or the application turned down)"),
        replies=(json_reply(200, "Terminated", _TENANT),),
        errors=_TRANSITION_ERRORS,
    ),
    Route(
        "POST",
        "/ops/v1/tenants/{tenant_id}/tokens",
        issue_tenant_token,
        "Issue a tenant API token (shown once)",
        "ops",
        params=(TENANT_ID,),
        body=obj({"label": {**schemas.text(64), "default": "tenant api"}}),
        body_required=False,
        replies=(json_reply(201, "Token issued; the secret is in `token`", ref("IssuedToken")),),
        errors=_TRANSITION_ERRORS,
    ),
    Route(
        "DELETE",
        "/ops/v1/tokens/{token_id}",
        revoke_token,
        "Revoke any token",
        "ops",
        params=(TOKEN_ID,),
        replies=(json_reply(200, "Revoked (or already revoked)", ref("TokenInfo")),),
    ),
    Route(
        "GET",
        "/ops/v1/tenants/{tenant_id}/peers",
        list_tenant_peers,
        "A tenant's peers, each with its egress address and port block (paginated by id)",
        "ops",
        params=(TENANT_ID, LIMIT, AFTER, PEER_STATUS),
        replies=(json_reply(200, "A page of the tenant's peers", ref("PeerPage")),),
    ),
    Route(
        "GET",
        "/ops/v1/egress",
        get_egress,
        "The egress mapping in force: addresses, ports, block size, capacity",
        "ops",
        replies=(json_reply(200, "The mapping, or enabled: false", ref("EgressMapping")),),
    ),
]
