"""Tenant portal (/portal): the company's devices, their configs and status, its API tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from gateway.api.tenant import client_config, config_response, gateway_addresses
from gateway.dataplane.status import peer_statuses
from gateway.http import appkeys
from gateway.http.auth import forget_cached_tokens
from gateway.web import appkeys as web_keys
from gateway.web import paths
from gateway.web.render import qr_svg
from gateway.web.session import (
    field_error,
    form,
    page,
    principal_for,
    redirect,
    require_user,
)
from provisioning import keys, peers, tenants, tokens, validation
from provisioning.accounts.sessions import SignedInUser
from provisioning.accounts.users import UserRole
from provisioning.clientconfig import render_conf
from provisioning.errors import DomainError, InvalidInput
from provisioning.peers import NewPeer, Peer

LIST_LIMIT = 500


def _tenant_id(who: SignedInUser) -> str:
    assert who.user.tenant_id is not None  # tenant admins always belong to one tenant
    return who.user.tenant_id


async def _company(request: web.Request, tenant_id: str) -> dict[str, Any]:
    async with request.app[appkeys.DATABASE].read() as conn:
        tenant = await tenants.get_tenant(conn, tenant_id)
        history = await tenants.list_transitions(conn, tenant_id)
    latest = history[-1] if history else None
    return {"tenant": tenant, "latest": latest}


def _base(who: SignedInUser) -> dict[str, Any]:
    return {"me": who.user, "csrf": who.csrf_token}


async def _devices_page(
    request: web.Request, who: SignedInUser, *, status: int = 200, **extra: Any
) -> web.Response:
    tenant_id = _tenant_id(who)
    show = request.query.get("show", "active")
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await peers.list_peers(
            conn, tenant_id, limit=LIST_LIMIT, after=None,
            status=None if show == "all" else "active",
        )
        live = await peer_statuses(conn, tenant_id, [p.id for p in found])
    return request.app[web_keys.PAGES].render(
        "portal/devices.html", status=status, devices=found, live=live, show=show,
        **(await _company(request, tenant_id)), **_base(who), **extra,
    )


@page
async def devices(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    return await _devices_page(request, who)


@page
async def device_status(request: web.Request) -> web.StreamResponse:
    """What the devices page polls to refresh status without a reload."""
    who = await require_user(request, UserRole.TENANT)
    async with request.app[appkeys.DATABASE].read() as conn:
        live = await peer_statuses(conn, _tenant_id(who))
    return web.json_response({"peers": live})


async def _once(request: web.Request, peer: Peer, psk: str | None) -> dict[str, Any]:
    """A server-generated private key is shown in this response only."""
    async with request.app[appkeys.DATABASE].read() as conn:
        where = await gateway_addresses(request, conn)
    conf = render_conf(client_config(request, peer, psk, where))
    return {"once_config": conf, "once_qr": qr_svg(conf)}


async def _device_page(
    request: web.Request, who: SignedInUser, peer_id: str, *, status: int = 200, **extra: Any
) -> web.Response:
    tenant_id = _tenant_id(who)
    async with request.app[appkeys.DATABASE].read() as conn:
        peer = await peers.get_peer(conn, tenant_id, peer_id)
        live = (await peer_statuses(conn, tenant_id, [peer_id]))[peer_id]
    return request.app[web_keys.PAGES].render(
        "portal/device.html", status=status, device=peer, live=live,
        **(await _company(request, tenant_id)), **_base(who), **extra,
    )


def _new_peer(fields: dict[str, str], now: Any) -> NewPeer:
    body: dict[str, Any] = {"name": fields.get("name", "").strip()}
    if fields.get("key_source", "server") == "browser":
        if not fields.get("public_key"):
            raise InvalidInput(
                "public_key", "the browser did not make a key; pick 'generate on the server'"
            )
        body["public_key"] = fields["public_key"]
    body["preshared_key"] = fields.get("preshared_key") == "on"
    return NewPeer.parse(body, now=now)


@page
async def add_device(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    fields = await form(request, who)
    commands = request.app[appkeys.COMMANDS]
    try:
        new = _new_peer(fields, commands.clock.now())
        peer = await commands.provision_peer(principal_for(who), new)
    except DomainError as error:
        return await _devices_page(request, who, status=400, **field_error(error))
    if peer.private_key:
        return await _device_page(
            request, who, peer.id, status=201, **await _once(request, peer, peer.preshared_key)
        )
    return redirect(f"/portal/devices/{peer.id}")


@page
async def device(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    return await _device_page(request, who, paths.PEER_ID.from_path(request))


@page
async def device_config(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    return await config_response(request, _tenant_id(who), paths.PEER_ID.from_path(request), "conf")


@page
async def rotate_device(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    fields = await form(request, who)
    peer_id = paths.PEER_ID.from_path(request)
    public_key = None
    try:
        if fields.get("key_source") == "browser":
            public_key = keys.normalise_public_key(fields.get("public_key", ""))
        peer = await request.app[appkeys.COMMANDS].rotate_peer(
            principal_for(who), peer_id, public_key
        )
    except DomainError as error:
        return await _device_page(request, who, peer_id, status=400, **field_error(error))
    if peer.private_key:
        async with request.app[appkeys.DATABASE].read() as conn:
            psk = await peers.get_preshared_key(conn, _tenant_id(who), peer.id)
        return await _device_page(request, who, peer.id, **await _once(request, peer, psk))
    return redirect(f"/portal/devices/{peer.id}")


@page
async def revoke_device(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    await form(request, who)
    peer_id = paths.PEER_ID.from_path(request)
    await request.app[appkeys.COMMANDS].revoke_peer(principal_for(who), peer_id)
    return redirect("/portal")


@page
async def device_link(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    await form(request, who)
    peer_id = paths.PEER_ID.from_path(request)
    settings = request.app[appkeys.SETTINGS]
    link = await request.app[appkeys.COMMANDS].create_link(
        principal_for(who), peer_id, timedelta(seconds=settings.tenants.link_ttl_seconds)
    )
    return await _device_page(
        request, who, peer_id, status=201,
        link_url=f"{settings.public_url}/links/{link.token}", link_expires=link.expires_at,
    )


async def _tokens_page(
    request: web.Request, who: SignedInUser, *, status: int = 200, **extra: Any
) -> web.Response:
    tenant_id = _tenant_id(who)
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await tokens.list_tokens(conn, tenant_id=tenant_id)
    return request.app[web_keys.PAGES].render(
        "portal/tokens.html", status=status, tokens=found,
        **(await _company(request, tenant_id)), **_base(who), **extra,
    )


@page
async def api_tokens(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    return await _tokens_page(request, who)


@page
async def issue_token(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    fields = await form(request, who)
    try:
        label = validation.text("label", fields.get("label", "").strip() or "tenant api")
        issued = await request.app[appkeys.COMMANDS].issue_tenant_token(
            _tenant_id(who), label=label, actor=principal_for(who).actor
        )
    except DomainError as error:
        return await _tokens_page(request, who, status=400, **field_error(error))
    return await _tokens_page(request, who, status=201, new_token=issued.secret)


@page
async def revoke_token(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.TENANT)
    await form(request, who)
    await request.app[appkeys.COMMANDS].revoke_token(
        paths.TOKEN_ID.from_path(request), actor=principal_for(who).actor, tenant_id=_tenant_id(who)
    )
    forget_cached_tokens(request.app[appkeys.DATABASE])
    return redirect("/portal/tokens")


ROUTES = [
    ("GET", "/portal", devices),
    ("GET", "/portal/devices/status", device_status),
    ("POST", "/portal/devices", add_device),
    ("GET", "/portal/devices/{peer_id}", device),
    ("GET", "/portal/devices/{peer_id}/config", device_config),
    ("POST", "/portal/devices/{peer_id}/rotate", rotate_device),
    ("POST", "/portal/devices/{peer_id}/revoke", revoke_device),
    ("POST", "/portal/devices/{peer_id}/link", device_link),
    ("GET", "/portal/tokens", api_tokens),
    ("POST", "/portal/tokens", issue_token),
    ("POST", "/portal/tokens/{token_id}/revoke", revoke_token),
]
