"""Tenant API (/v1): peers of the calling tenant, their configs and one-time links."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.api import schemas
from gateway.api.sealed_page import render_text, sealed_config_page
from gateway.api.views import page, peer_view
from gateway.commands import RenderConfig
from gateway.dataplane.status import peer_connection
from gateway.egress.mapping import EgressMap
from gateway.egress.store import logged_maps
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import read_json
from gateway.http.params import Choice, Identifier, WholeNumber
from gateway.http.problems import bad_request
from gateway.http.routes import NO_STORE, Reply, Route, json_reply, location, obj, ref
from provisioning import gateways, ids, keys, peers, validation
from provisioning.clientconfig import CONFIG_FORMATS, ClientConfig, render, render_conf
from provisioning.errors import GatewayUnavailable
from provisioning.links import LINK_TOKEN_FORMAT, ConfigLink
from provisioning.peers import NewPeer, Peer
from provisioning.tokens import Role

PEER_FIELDS = frozenset(schemas.NEW_PEER["properties"])

PEER_ID = Identifier("peer_id", ids.UUID, location="path", description="The peer's id")
LIMIT = WholeNumber(
    "limit", minimum=1, maximum=500, default=50, description="Page size (at most 500)"
)
AFTER = Identifier(
    "after", ids.UUID, description="The `next` value of the previous page: items after this id"
)
PEER_STATUS = Choice("status", peers.STATUSES, description="Only peers in this state")
FORMAT = Choice("format", tuple(CONFIG_FORMATS), default="conf", description="Config format")
LINK_TOKEN = Identifier(
    "token", LINK_TOKEN_FORMAT, location="path", description="The token from the link's URL"
)

# gateway id → (public endpoint, interface public key once its agent has reported it)
GatewayAddresses = dict[str, tuple[str, str | None]]


async def _connection(request: web.Request, peer_id: str) -> dict[str, Any]:
    async with request.app[appkeys.DATABASE].read() as conn:
        return await peer_connection(conn, peer_id)


def _wants_link(body: dict[str, Any]) -> bool:
    wanted = body.pop("link", False)
    if not isinstance(wanted, bool):
        raise bad_request("link must be true or false", field="link")
    return wanted


def _sealed_renderer(request: web.Request, where: GatewayAddresses) -> RenderConfig:
    def render(peer: Peer, psk: str | None) -> str:
        return render_conf(client_config(request, peer, psk, where))

    return render


def _link_view(request: web.Request, link: ConfigLink) -> dict[str, Any]:
    return {
        "url": f"{request.app[appkeys.SETTINGS].public_url}/links/{link.token}",
        "expires_at": validation.rfc3339(link.expires_at),
    }


async def create_peer(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    body = await read_json(request, allowed=PEER_FIELDS)
    commands = request.app[appkeys.COMMANDS]
    with_link = _wants_link(body)
    new = NewPeer.parse(body, now=commands.clock.now())
    if with_link:
        # A server-generated key then travels only inside the sealed link, never here.
        async with request.app[appkeys.DATABASE].read() as conn:
            where = await gateway_addresses(request, conn)
        peer, link = await commands.provision_peer_with_link(
            who, new, _default_link_ttl(request), _sealed_renderer(request, where)
        )
        return web.json_response(
            {**peer_view(peer.without_private_key(), egress=await _egress_of(request, peer)),
             "link": _link_view(request, link)},
            status=201,
            headers={"Location": f"/v1/peers/{peer.id}", "Cache-Control": "no-store"},
        )
    peer = await commands.provision_peer(who, new)
    # The create hot path: one orjson encode of the document, straight to the body.
    return web.Response(
        body=orjson.dumps(await _with_config(request, peer)),
        status=201,
        content_type="application/json",
        headers={"Location": f"/v1/peers/{peer.id}", "Cache-Control": "no-store"},
    )


async def list_peers(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    limit = LIMIT.value(request)
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await peers.list_peers(
            conn,
            who.tenant_id or "",
            limit=limit,
            after=AFTER.optional(request),
            status=PEER_STATUS.optional(request),
        )
        maps = await _egress_maps(request, conn, [p.gateway_id for p in found])
    return web.json_response(
        page([peer_view(p, egress=maps.get(p.gateway_id or "")) for p in found], limit=limit)
    )


async def get_peer(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    peer_id = PEER_ID.value(request)
    async with request.app[appkeys.DATABASE].read() as conn:
        peer = await peers.get_peer(conn, who.tenant_id, peer_id)
        maps = await _egress_maps(request, conn, [peer.gateway_id])
    return web.json_response(
        peer_view(peer, await _connection(request, peer_id), egress=maps.get(peer.gateway_id or ""))
    )


async def revoke_peer(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    await request.app[appkeys.COMMANDS].revoke_peer(who, PEER_ID.value(request))
    return web.Response(status=204)


async def rotate_peer(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    body = await read_json(request, allowed={"public_key", "link"}, optional=True)
    if _wants_link(body):
        if body.get("public_key") is not None:
            raise bad_request("link is for a server-generated key; leave out public_key "
                              "(a client key needs no sealed link)", field="link")
        async with request.app[appkeys.DATABASE].read() as conn:
            where = await gateway_addresses(request, conn)
        peer, link = await request.app[appkeys.COMMANDS].rotate_peer_with_link(
            who, PEER_ID.value(request), _default_link_ttl(request),
            _sealed_renderer(request, where),
        )
        return web.json_response(
            {**peer_view(peer.without_private_key(), egress=await _egress_of(request, peer)),
             "link": _link_view(request, link)},
            headers={"Cache-Control": "no-store"},
        )
    public_key = body.get("public_key")
    if public_key is not None:
        public_key = keys.normalise_public_key(public_key)
    peer = await request.app[appkeys.COMMANDS].rotate_peer(
        who, PEER_ID.value(request), public_key
    )
    async with request.app[appkeys.DATABASE].read() as conn:
        psk = await peers.get_preshared_key(conn, who.tenant_id or "", peer.id)
    return web.json_response(
        await _with_config(request, peer, psk), headers={"Cache-Control": "no-store"}
    )


async def _with_config(
    request: web.Request, peer: Peer, psk: str | None = None
) -> dict[str, Any]:
    """A server-generated key exists only in this response, so hand over the full config now."""
    where: GatewayAddresses = {}
    if peer.private_key or peer.gateway_id not in (None, _default_gateway(request)):
        async with request.app[appkeys.DATABASE].read() as conn:
            maps = await _egress_maps(request, conn, [peer.gateway_id])
            where = await gateway_addresses(request, conn) if peer.private_key else {}
    else:  # a client key on this host's own gateway: nothing to read (the create hot path)
        maps = _own_egress(request)
    doc = peer_view(peer, egress=maps.get(peer.gateway_id or ""))
    if peer.private_key:
        try:
            cfg = client_config(request, peer, psk or peer.preshared_key, where)
        except GatewayUnavailable as exc:
            # The private key is still handed over (once); GET .../config works later.
            doc["config_pending"] = exc.detail
        else:
            doc["config"] = render_conf(cfg)
    return doc


async def _egress_of(request: web.Request, peer: Peer) -> EgressMap | None:
    async with request.app[appkeys.DATABASE].read() as conn:
        maps = await _egress_maps(request, conn, [peer.gateway_id])
    return maps.get(peer.gateway_id or "")


async def _egress_maps(
    request: web.Request, conn: AsyncConnection, gateway_ids: Iterable[str | None]
) -> dict[str, EgressMap]:
    """Each gateway's egress mapping: this host's plan for the default gateway, the logged
    mapping for gateways run by agents."""
    others = {g for g in gateway_ids if g is not None} - {_default_gateway(request)}
    return {**(await logged_maps(conn, others) if others else {}), **_own_egress(request)}


def _default_gateway(request: web.Request) -> str:
    return request.app[appkeys.SETTINGS].network.gateway_id


def _own_egress(request: web.Request) -> dict[str, EgressMap]:
    """This host's plan for its own (default) gateway, if it runs egress."""
    plan = request.app.get(appkeys.EGRESS)
    return {} if plan is None else {_default_gateway(request): plan.egress}


async def gateway_addresses(request: web.Request, conn: AsyncConnection) -> GatewayAddresses:
    """Where each gateway's clients connect, and its interface key; this host's own default
    gateway from its settings and keys."""
    settings = request.app[appkeys.SETTINGS]
    found: GatewayAddresses = {
        g.id: (g.endpoint, g.public_key) for g in await gateways.list_gateways(conn)
    }
    found[settings.network.gateway_id] = (
        settings.network.endpoint, request.app[appkeys.KEYS].wireguard_public
    )
    return found


def client_config(
    request: web.Request, peer: Peer, preshared_key: str | None, where: GatewayAddresses
) -> ClientConfig:
    settings = request.app[appkeys.SETTINGS]
    endpoint, public_key = where.get(
        peer.gateway_id or settings.network.gateway_id, (settings.network.endpoint, None)
    )
    if public_key is None:
        raise GatewayUnavailable(
            "the peer's gateway has not reported its interface key yet; the config is "
            "available once `vpngw agent` has started on it"
        )
    return ClientConfig(
        peer_name=peer.name,
        tunnel_ips=peer.tunnel_ips,
        dns=settings.network.dns,
        gateway_public_key=public_key,
        endpoint=endpoint,
        allowed_ips=settings.network.client_allowed_ips,
        persistent_keepalive=settings.network.persistent_keepalive,
        private_key=peer.private_key,
        preshared_key=preshared_key,
    )


async def config_response(
    request: web.Request, tenant_id: str, peer_id: str, fmt: str
) -> web.Response:
    async with request.app[appkeys.DATABASE].read() as conn:
        peer, psk = await peers.deliverable_config(conn, tenant_id, peer_id)
        where = await gateway_addresses(request, conn)
    body = render(client_config(request, peer, psk, where), fmt)
    filename = f"{_safe_filename(peer.name)}.{fmt.split('.')[-1]}"
    return web.Response(
        body=body,
        content_type=CONFIG_FORMATS[fmt].split(";")[0],
        charset="utf-8" if fmt == "conf" else None,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="{filename}"',
        },
    )


def _safe_filename(name: str) -> str:
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in name)
    return cleaned[:32] or "peer"


async def get_config(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    return await config_response(
        request, who.tenant_id or "", PEER_ID.value(request), FORMAT.value(request)
    )


async def create_link(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    body = await read_json(request, allowed={"ttl_seconds"}, optional=True)
    tenants = request.app[appkeys.SETTINGS].tenants
    ttl = validation.integer(
        "ttl_seconds",
        body.get("ttl_seconds", tenants.link_ttl_seconds),
        minimum=60,
        maximum=tenants.link_max_ttl_seconds,
    )
    link = await request.app[appkeys.COMMANDS].create_link(
        who, PEER_ID.value(request), timedelta(seconds=ttl)
    )
    return web.json_response(
        _link_view(request, link), status=201, headers={"Cache-Control": "no-store"}
    )


def _default_link_ttl(request: web.Request) -> timedelta:
    return timedelta(seconds=request.app[appkeys.SETTINGS].tenants.link_ttl_seconds)


async def redeem_link(request: web.Request) -> web.Response:
    fmt = FORMAT.value(request)
    redeemed = await request.app[appkeys.COMMANDS].redeem_link(LINK_TOKEN.value(request))
    if redeemed.sealed_config is None:
        return await config_response(request, redeemed.tenant_id, redeemed.peer_id, fmt)
    if "format" not in request.query and "text/html" in request.headers.get("Accept", ""):
        return sealed_config_page(redeemed.sealed_config)
    body = redeemed.sealed_config.encode() if fmt == "conf" else render_text(
        redeemed.sealed_config, fmt)
    return web.Response(
        body=body,
        content_type=CONFIG_FORMATS[fmt].split(";")[0],
        charset="utf-8" if fmt == "conf" else None,
        headers={"Cache-Control": "no-store",
                 "Content-Disposition": f'attachment; filename="wg.{fmt.split(".")[-1]}"'},
    )


_PEER = ref("Peer")
_CONFIG_CONTENT = {
    "text/plain": {"type": "string", "description": "wg-quick config (format=conf)"},
    "application/json": ref("ClientConfig"),
    "image/svg+xml": {"type": "string", "description": "QR code of the config (format=qr.svg)"},
    "image/png": {
        "type": "string",
        "format": "binary",
        "description": "QR code of the config (format=qr.png)",
    },
}
_CONFIG_REPLY = Reply(
    200,
    "The client config in the requested format, as an attachment",
    _CONFIG_CONTENT,
    {
        **NO_STORE,
        "Content-Disposition": {
            "description": "attachment; filename=<peer name>.<format>",
            "schema": {"type": "string"},
        },
    },
)
_NOT_ACTIVE = {409: ("peer-not-active",)}

ROUTES = [
    Route(
        "POST",
        "/v1/peers",
        create_peer,
        "Provision a peer (client-side key preferred)",
        "tenant",
        description="With `public_key` the private key never leaves the device. Without "
        "it the server generates a key pair: `private_key` and a ready `config` appear in "
        "this response only and are never stored.",
        body=ref("NewPeer"),
        body_example={"name": "alice-laptop", "public_key": schemas.WG_KEY["examples"][0]},
        replies=(
            json_reply(
                201,
                "Peer created; `private_key` and `config` only if the server generated the key",
                _PEER,
                headers={**location("peer"), **NO_STORE},
            ),
        ),
        errors={
            403: ("tenant-not-verified",),
            409: ("duplicate-public-key", "quota-exceeded"),
            507: ("pool-exhausted",),
        },
    ),
    Route(
        "GET",
        "/v1/peers",
        list_peers,
        "List this tenant's peers (paginated by id)",
        "tenant",
        params=(LIMIT, AFTER, PEER_STATUS),
        replies=(json_reply(200, "A page of peers", ref("PeerPage")),),
    ),
    Route(
        "GET",
        "/v1/peers/{peer_id}",
        get_peer,
        "One peer with its latest handshake, endpoint and byte counts",
        "tenant",
        params=(PEER_ID,),
        replies=(json_reply(200, "The peer, with `connection`", _PEER),),
    ),
    Route(
        "DELETE",
        "/v1/peers/{peer_id}",
        revoke_peer,
        "Revoke a peer",
        "tenant",
        params=(PEER_ID,),
        replies=(Reply(204, "Revoked; its key leaves the interface"),),
        errors=_NOT_ACTIVE,
    ),
    Route(
        "POST",
        "/v1/peers/{peer_id}/rotation",
        rotate_peer,
        "Replace the peer's key; the old key leaves the interface",
        "tenant",
        description="Send the device's new `public_key`, or no body to have the server "
        "generate a new key pair (returned once, with a ready `config`).",
        params=(PEER_ID,),
        body=obj(
            {
                "public_key": {**schemas.WG_KEY, "description": "The device's new key"},
                "link": {
                    **schemas.BOOLEAN,
                    "default": False,
                    "description": "Without public_key: hand the new config over only through "
                    "a sealed one-time link (returned as `link`)",
                },
            }
        ),
        body_required=False,
        replies=(json_reply(200, "The peer with its new key", _PEER, headers=NO_STORE),),
        errors={409: ("peer-not-active", "duplicate-public-key")},
    ),
    Route(
        "GET",
        "/v1/peers/{peer_id}/config",
        get_config,
        "Client config",
        "tenant",
        params=(PEER_ID, FORMAT),
        replies=(_CONFIG_REPLY,),
        errors=_NOT_ACTIVE,
    ),
    Route(
        "POST",
        "/v1/peers/{peer_id}/links",
        create_link,
        "One-time config download link",
        "tenant",
        params=(PEER_ID,),
        body=obj(
            {
                "ttl_seconds": {
                    "type": "integer",
                    "minimum": 60,
                    "description": "How long the link works (default and maximum: settings)",
                }
            }
        ),
        body_required=False,
        replies=(json_reply(201, "Link created", ref("Link"), headers=NO_STORE),),
        errors=_NOT_ACTIVE,
    ),
    Route(
        "GET",
        "/links/{token}",
        redeem_link,
        "Download a config once through a link",
        "public",
        description="Unknown links are 404, used or expired ones 410. A sealed link opened "
        "by a browser (Accept: text/html, no format) shows a page for phones.",
        params=(LINK_TOKEN, FORMAT),
        replies=(
            Reply(
                200,
                _CONFIG_REPLY.description,
                {
                    **_CONFIG_CONTENT,
                    "text/html": {"type": "string", "description": "Page for a phone"},
                },
                _CONFIG_REPLY.headers,
            ),
        ),
        errors={409: ("peer-not-active",), 410: ("link-unavailable",)},
    ),
]
