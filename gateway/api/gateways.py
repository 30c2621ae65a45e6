"""Ops API for gateways (/ops/v1/gateways): register, list, show, retire, agent tokens."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api.agent import GATEWAY_ID
from gateway.api.schemas import INTEGER as INT
from gateway.api.schemas import STRING as STR
from gateway.api.views import page, token_view
from gateway.dataplane.status import count_connected
from gateway.egress.requested import parse_egress
from gateway.egress.store import logged_maps
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import read_json
from gateway.http.params import Identifier, WholeNumber
from gateway.http.routes import NO_STORE, Route, json_reply, location, obj
from provisioning import gateways, ids, tokens, validation
from provisioning.errors import InvalidInput
from provisioning.gateways import Gateway, NewGateway
from provisioning.tokens import Role

EGRESS_SCHEMA = obj(
    {
        "interface": STR,
        "addresses": {"type": "array", "items": STR},
        "ports": STR,
        "block_size": {"oneOf": [INT, {"const": "auto"}]},
        "ipv6": {"enum": ["nat66", "routed", "off"]},
        "addresses6": {"type": "array", "items": STR},
    }
)
GATEWAY_FIELDS = {"name": STR, "endpoint": STR, "pool": STR, "pool6": STR, "egress": EGRESS_SCHEMA}
OPS_GATEWAY_ID = Identifier("gateway_id", GATEWAY_ID.fmt, location="path",
                            description="The gateway's id")
LIMIT = WholeNumber("limit", minimum=1, maximum=500, default=50,
                    description="Page size (at most 500)")
AFTER = Identifier("after", GATEWAY_ID.fmt, description="The `next` value of the previous page")
TENANT_ID = Identifier("tenant_id", ids.UUID, location="path", description="The tenant's id")
GATEWAY = {"type": "object"}


def gateway_view(g: Gateway, *, default_id: str) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "endpoint": g.endpoint,
        "status": g.status,
        "default": g.id == default_id,
        "pools": [str(p) for p in g.pools],
        "egress": g.egress,
        "public_key": g.public_key,
        "listen_port": g.listen_port,
        "revision": g.revision,
        "interface": None
        if g.interface_ok is None
        else {"ok": g.interface_ok, "detail": g.interface_detail},
        "last_contact_at": validation.rfc3339(g.last_contact_at) if g.last_contact_at else None,
        "created_at": validation.rfc3339(g.created_at),
        "retired_at": validation.rfc3339(g.retired_at) if g.retired_at else None,
    }


def _default(request: web.Request) -> str:
    return request.app[appkeys.SETTINGS].network.gateway_id


async def create_gateway(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed=GATEWAY_FIELDS)
    new = NewGateway.parse(body)
    egress = parse_egress(body["egress"]) if body.get("egress") is not None else None
    gateway, issued = await request.app[appkeys.COMMANDS].register_gateway(
        new, egress, actor=who.actor
    )
    doc = {
        **gateway_view(gateway, default_id=_default(request)),
        "agent_token": issued.secret,
        "agent_token_id": issued.token_id,
    }
    return web.json_response(
        doc,
        status=201,
        headers={"Location": f"/ops/v1/gateways/{gateway.id}", "Cache-Control": "no-store"},
    )


async def list_gateways(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    limit = LIMIT.value(request)
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await gateways.list_gateways(conn, limit=limit, after=AFTER.optional(request))
    default_id = _default(request)
    return web.json_response(
        page([gateway_view(g, default_id=default_id) for g in found], limit=limit)
    )


async def get_gateway(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    gateway_id = request.match_info["gateway_id"]
    async with request.app[appkeys.DATABASE].read() as conn:
        gateway = await gateways.get_gateway(conn, gateway_id)
        active = await gateways.count_active_peers(conn, gateway_id)
        live = await count_connected(conn, gateway_id)
        egress = (await logged_maps(conn, [gateway_id])).get(gateway_id)
        agent_tokens = await tokens.list_tokens(conn, gateway_id=gateway_id)
    return web.json_response(
        {
            **gateway_view(gateway, default_id=_default(request)),
            "active_peers": active,
            "live_sessions": live,
            "egress_capacity": None
            if egress is None
            else {"blocks": egress.capacity, "free": egress.capacity - active},
            "tokens": [token_view(t) for t in agent_tokens],
        }
    )


async def retire_gateway(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"reason"})
    reason = validation.text("reason", body.get("reason"), max_len=500)
    gateway = await request.app[appkeys.COMMANDS].retire_gateway(
        request.match_info["gateway_id"], reason=reason, actor=who.actor
    )
    return web.json_response(gateway_view(gateway, default_id=_default(request)))


async def issue_agent_token(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"label"}, optional=True)
    label = validation.text("label", body.get("label", "agent"))
    issued = await request.app[appkeys.COMMANDS].issue_agent_token(
        request.match_info["gateway_id"], label=label, actor=who.actor
    )
    return web.json_response(
        {"id": issued.token_id, "token": issued.secret, "role": issued.role.value,
         "gateway_id": request.match_info["gateway_id"], "label": issued.label},
        status=201,
        headers={"Cache-Control": "no-store"},
    )


async def set_default_gateway(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    body = await read_json(request, allowed={"gateway_id"})
    if "gateway_id" not in body:
        raise InvalidInput("gateway_id", "required: a gateway id, or null for no default")
    wanted = body["gateway_id"]
    if wanted is not None:
        wanted = validation.text("gateway_id", wanted)
    tenant_id = request.match_info["tenant_id"]
    chosen = await request.app[appkeys.COMMANDS].set_tenant_default_gateway(tenant_id, wanted)
    return web.json_response({"tenant_id": tenant_id, "default_gateway_id": chosen})


ROUTES = [
    Route(
        "POST",
        "/ops/v1/gateways",
        create_gateway,
        "Register a gateway host; returns its agent token (shown once)",
        "ops",
        body=obj(GATEWAY_FIELDS, "name", "endpoint"),
        replies=(json_reply(201, "Gateway registered, with its agent token", GATEWAY,
                            headers={**location("gateway"), **NO_STORE}),),
        errors={409: ("gateway-unavailable", "pool-overlap")},
    ),
    Route(
        "GET",
        "/ops/v1/gateways",
        list_gateways,
        "List gateways (paginated by id)",
        "ops",
        params=(LIMIT, AFTER),
        replies=(json_reply(200, "A page of gateways", {"type": "object"}),),
    ),
    Route(
        "GET",
        "/ops/v1/gateways/{gateway_id}",
        get_gateway,
        "One gateway: status, last contact, interface key, peers, live sessions, egress capacity",
        "ops",
        params=(OPS_GATEWAY_ID,),
        replies=(json_reply(200, "The gateway", GATEWAY),),
    ),
    Route(
        "POST",
        "/ops/v1/gateways/{gateway_id}/retirement",
        retire_gateway,
        "Retire a gateway (refused while it has active peers); its agent tokens are revoked",
        "ops",
        body=obj({"reason": STR}, "reason"),
        params=(OPS_GATEWAY_ID,),
        replies=(json_reply(200, "The retired gateway", GATEWAY),),
        errors={409: ("gateway-unavailable",)},
    ),
    Route(
        "POST",
        "/ops/v1/gateways/{gateway_id}/tokens",
        issue_agent_token,
        "Issue another agent token for a gateway (shown once)",
        "ops",
        body=obj({"label": STR}),
        body_required=False,
        params=(OPS_GATEWAY_ID,),
        replies=(json_reply(201, "Token issued", {"type": "object"}, headers=NO_STORE),),
    ),
    Route(
        "PUT",
        "/ops/v1/tenants/{tenant_id}/default-gateway",
        set_default_gateway,
        "Where the tenant's new peers go when they name no gateway (null: the gateway with "
        "the most free addresses)",
        "ops",
        body=obj({"gateway_id": {"type": ["string", "null"]}}, "gateway_id"),
        params=(TENANT_ID,),
        replies=(json_reply(200, "The tenant's default gateway", {"type": "object"}),),
    ),
]
