"""Ops console page for two-person control: what waits for a second person, approve or reject."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.approvals.policy import Status
from gateway.http import appkeys
from gateway.web import appkeys as web_keys
from gateway.web.session import field_error, form, page, principal_for, redirect, require_user
from provisioning import validation
from provisioning.accounts.sessions import SignedInUser
from provisioning.accounts.users import UserRole
from provisioning.errors import DomainError

RECENT = 50


async def _approvals_page(
    request: web.Request, who: SignedInUser, *, status: int = 200, **extra: Any
) -> web.Response:
    approvals = request.app[appkeys.APPROVALS]
    await approvals.expire_due()  # what shows as pending can still be decided
    pending = await approvals.list(status=Status.PENDING, limit=500)
    recent = [a for a in await approvals.list(limit=RECENT) if a.status is not Status.PENDING]
    return request.app[web_keys.PAGES].render(
        "console/approvals.html", status=status, required=approvals.required,
        pending=[approvals.view(a) for a in pending], recent=[approvals.view(a) for a in recent],
        me_actor=principal_for(who).actor, me=who.user, csrf=who.csrf_token, **extra,
    )


@page
async def approval_list(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    return await _approvals_page(request, who)


@page
async def approve(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    await form(request, who)
    try:
        await request.app[appkeys.APPROVALS].grant(
            request.match_info["approval_id"], actor=principal_for(who).actor
        )
    except DomainError as error:
        return await _approvals_page(request, who, status=409, **field_error(error))
    return redirect("/console/approvals")


@page
async def reject(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    fields = await form(request, who)
    try:
        reason = fields.get("reason", "").strip() or None
        if reason is not None:
            reason = validation.text("reason", reason, max_len=500)
        await request.app[appkeys.APPROVALS].reject(
            request.match_info["approval_id"], actor=principal_for(who).actor, reason=reason
        )
    except DomainError as error:
        return await _approvals_page(request, who, status=409, **field_error(error))
    return redirect("/console/approvals")


ROUTES = [
    ("GET", "/console/approvals", approval_list),
    ("POST", "/console/approvals/{approval_id}/approve", approve),
    ("POST", "/console/approvals/{approval_id}/reject", reject),
]
