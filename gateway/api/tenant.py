"""Tenant API (/v1): peers of the calling tenant, their configs and one-time links."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.api.sealed_page import render_text, sealed_config_page
from gateway.api.views import page, peer_view
from gateway.commands import RenderConfig
from gateway.egress.mapping import EgressMap
from gateway.egress.store import logged_maps
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import query_int, read_json
from gateway.http.problems import bad_request
from gateway.http.routes import BOOL, INT, STR, TIME, Route, obj
from provisioning import gateways, keys, peers, validation
from provisioning.clientconfig import CONFIG_FORMATS, ClientConfig, render, render_conf
from provisioning.errors import GatewayUnavailable, PeerNotActive
from provisioning.links import ConfigLink
from provisioning.peers import NewPeer, Peer
from provisioning.schema import peer_status
from provisioning.tokens import Role

PEER_FIELDS = {
    "name": STR,
    "public_key": STR,
    "preshared_key": BOOL,
    "expires_at": TIME,
    "link": BOOL,
    "gateway_id": STR,
}

# gateway id → (public endpoint, interface public key once its agent has reported it)
GatewayAddresses = dict[str, tuple[str, str | None]]


async def _connection(request: web.Request, peer_id: str) -> dict[str, Any]:
    async with request.app[appkeys.DATABASE].read() as conn:
        row = (
            await conn.execute(select(peer_status).where(peer_status.c.peer_id == peer_id))
        ).first()
    if row is None:
        return {
            "connected": False,
            "latest_handshake": None,
            "endpoint": None,
            "rx_bytes": 0,
            "tx_bytes": 0,
        }
    return {
        "connected": bool(row.connected),
        "latest_handshake": validation.rfc3339(row.latest_handshake)
        if row.latest_handshake
        else None,
        "endpoint": row.endpoint,
        "rx_bytes": row.rx_bytes,
        "tx_bytes": row.tx_bytes,
    }


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
    return web.json_response(
        await _with_config(request, peer),
        status=201,
        headers={"Location": f"/v1/peers/{peer.id}", "Cache-Control": "no-store"},
    )


async def list_peers(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    limit = query_int(request, "limit", default=50, minimum=1, maximum=500)
    status = request.query.get("status")
    if status is not None and status not in {"active", "revoked", "expired"}:
        raise bad_request("status must be active, revoked or expired", field="status")
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await peers.list_peers(
            conn, who.tenant_id or "", limit=limit, after=request.query.get("after"), status=status
        )
        maps = await _egress_maps(request, conn, [p.gateway_id for p in found])
    return web.json_response(
        page([peer_view(p, egress=maps.get(p.gateway_id or "")) for p in found], limit=limit)
    )


async def get_peer(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    peer_id = request.match_info["peer_id"]
    async with request.app[appkeys.DATABASE].read() as conn:
        peer = await peers.get_peer(conn, who.tenant_id, peer_id)
        maps = await _egress_maps(request, conn, [peer.gateway_id])
    return web.json_response(
        peer_view(peer, await _connection(request, peer_id), egress=maps.get(peer.gateway_id or ""))
    )


async def revoke_peer(request: web.Request) -> web.Response:
    who = await require(request, Role.TENANT)
    await request.app[appkeys.COMMANDS].revoke_peer(who, request.match_info["peer_id"])
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
            who, request.match_info["peer_id"], _default_link_ttl(request),
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
        who, request.match_info["peer_id"], public_key
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
    async with request.app[appkeys.DATABASE].read() as conn:
        maps = await _egress_maps(request, conn, [peer.gateway_id])
        where = await gateway_addresses(request, conn) if peer.private_key else {}
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
    default_id = request.app[appkeys.SETTINGS].network.gateway_id
    others = {g for g in gateway_ids if g is not None} - {default_id}
    maps = await logged_maps(conn, others) if others else {}
    plan = request.app.get(appkeys.EGRESS)
    if plan is not None:
        maps[default_id] = plan.egress
    return maps


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


def _format(request: web.Request) -> str:
    fmt = request.query.get("format", "conf")
    if fmt not in CONFIG_FORMATS:
        raise bad_request(f"format must be one of {', '.join(CONFIG_FORMATS)}", field="format")
    return fmt


async def config_response(
    request: web.Request, tenant_id: str, peer_id: str, fmt: str
) -> web.Response:
    async with request.app[appkeys.DATABASE].read() as conn:
        peer = await peers.get_peer(conn, tenant_id, peer_id)
        psk = await peers.get_preshared_key(conn, tenant_id, peer_id)
        where = await gateway_addresses(request, conn)
    if peer.status != "active":
        raise PeerNotActive(f"peer {peer_id} is {peer.status}; it has no usable config")
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
        request, who.tenant_id or "", request.match_info["peer_id"], _format(request)
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
        who, request.match_info["peer_id"], timedelta(seconds=ttl)
    )
    return web.json_response(
        _link_view(request, link), status=201, headers={"Cache-Control": "no-store"}
    )


def _default_link_ttl(request: web.Request) -> timedelta:
    return timedelta(seconds=request.app[appkeys.SETTINGS].tenants.link_ttl_seconds)


async def redeem_link(request: web.Request) -> web.Response:
    fmt = _format(request)
    redeemed = await request.app[appkeys.COMMANDS].redeem_link(request.match_info["token"])
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


ROUTES = [
    Route(
        "POST",
        "/v1/peers",
        create_peer,
        "Provision a peer (client-side key preferred)",
        "tenant",
        body=obj(PEER_FIELDS),
        required=("name",),
        responses={201: "Peer created; private_key present only if the server generated it"},
    ),
    Route(
        "GET",
        "/v1/peers",
        list_peers,
        "List this tenant's peers (paginated by id)",
        "tenant",
        query={"limit": INT, "after": STR, "status": STR},
    ),
    Route(
        "GET",
        "/v1/peers/{peer_id}",
        get_peer,
        "One peer with its latest handshake, endpoint and byte counts",
        "tenant",
    ),
    Route(
        "DELETE",
        "/v1/peers/{peer_id}",
        revoke_peer,
        "Revoke a peer",
        "tenant",
        responses={204: "Revoked"},
    ),
    Route(
        "POST",
        "/v1/peers/{peer_id}/rotation",
        rotate_peer,
        "Replace the peer's key; the old key leaves the interface",
        "tenant",
        body=obj({"public_key": STR}),
    ),
    Route(
        "GET",
        "/v1/peers/{peer_id}/config",
        get_config,
        "Client config",
        "tenant",
        query={"format": {"type": "string", "enum": list(CONFIG_FORMATS)}},
        produces=tuple(sorted({v.split(";")[0] for v in CONFIG_FORMATS.values()})),
    ),
    Route(
        "POST",
        "/v1/peers/{peer_id}/links",
        create_link,
        "One-time config download link",
        "tenant",
        body=obj({"ttl_seconds": INT}),
        responses={201: "Link created"},
    ),
    Route(
        "GET",
        "/links/{token}",
        redeem_link,
        "Download a config once through a link",
        "public",
        query={"format": {"type": "string", "enum": list(CONFIG_FORMATS)}},
        produces=tuple(sorted({v.split(";")[0] for v in CONFIG_FORMATS.values()})),
    ),
]
