"""Ops console (/console): tenants and their papers, users, regulator keys, the audit log."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from gateway.approvals.policy import Approval
from gateway.audit import merkle
from gateway.audit.queries import EVENT_TYPE, list_entries
from gateway.http import appkeys
from gateway.http.auth import forget_cached_tokens
from gateway.regulator import registry
from gateway.web import appkeys as web_keys
from gateway.web import paths
from gateway.web.session import (
    field_error,
    form,
    page,
    principal_for,
    redirect,
    require_user,
)
from provisioning import ids, tenants, tokens, validation
from provisioning.accounts import users as accounts
from provisioning.accounts.sessions import SignedInUser
from provisioning.accounts.users import UserRole
from provisioning.errors import DomainError, InvalidInput
from provisioning.tenants import NewTenant, TenantStatus

LIST_LIMIT = 500
AUDIT_PAGE = 50
TENANT_FIELDS = ("legal_name", "registration_number", "tax_id", "country", "contact_email")


def _base(who: SignedInUser) -> dict[str, Any]:
    return {"me": who.user, "csrf": who.csrf_token}


def _actor(who: SignedInUser) -> str:
    return principal_for(who).actor


# --- tenants ---------------------------------------------------------------------------


async def _tenants_page(
    request: web.Request, who: SignedInUser, *, status: int = 200, **extra: Any
) -> web.Response:
    wanted = request.query.get("status", "")
    if wanted and wanted not in TenantStatus.__members__.values():
        wanted = ""
    search = request.query.get("q", "").strip().lower()[:200]
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await tenants.list_tenants(
            conn, limit=LIST_LIMIT, after=None,
            status=TenantStatus(wanted) if wanted else None,
        )
    if search:
        found = [
            t for t in found
            if search in t.legal_name.lower() or search in t.registration_number.lower()
            or search in t.contact_email.lower() or search == t.id
        ]
    return request.app[web_keys.PAGES].render(
        "console/tenants.html", status=status, tenants=found, wanted=wanted, q=search,
        statuses=[s.value for s in TenantStatus], form=extra.pop("form", {}), **_base(who),
        **extra,
    )


@page
async def tenant_list(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    return await _tenants_page(request, who)


@page
async def create_tenant(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    fields = await form(request, who)
    settings = request.app[appkeys.SETTINGS]
    body: dict[str, Any] = {name: fields.get(name, "").strip() for name in TENANT_FIELDS}
    try:
        max_peers = fields.get("max_peers", "").strip()
        if max_peers:
            if not max_peers.isdigit():
                raise InvalidInput("max_peers", "must be a whole number")
            body["max_peers"] = int(max_peers)
        new = NewTenant.parse(body, default_max_peers=settings.tenants.default_max_peers)
        tenant = await request.app[appkeys.COMMANDS].create_tenant(new, actor=_actor(who))
    except DomainError as error:
        return await _tenants_page(request, who, status=400, form=body, **field_error(error))
    return redirect(f"/console/tenants/{tenant.id}")


async def _tenant_page(
    request: web.Request, who: SignedInUser, tenant_id: str, *, status: int = 200, **extra: Any
) -> web.Response:
    async with request.app[appkeys.DATABASE].read() as conn:
        tenant = await tenants.get_tenant(conn, tenant_id)
        history = await tenants.list_transitions(conn, tenant_id)
        active = await tenants.count_active_peers(conn, tenant_id)
        token_list = await tokens.list_tokens(conn, tenant_id=tenant_id)
    people = await request.app[web_keys.ACCOUNTS].list_users(tenant_id=tenant_id)
    allowed = {
        "verify": tenant.status is TenantStatus.PENDING,
        "suspend": tenant.status is TenantStatus.VERIFIED,
        "reinstate": tenant.status is TenantStatus.SUSPENDED,
        "terminate": tenant.status is not TenantStatus.TERMINATED,
    }
    return request.app[web_keys.PAGES].render(
        "console/tenant.html", status=status, tenant=tenant, history=history,
        active_peers=active, tokens=token_list, users=people, allowed=allowed,
        **_base(who), **extra,
    )


@page
async def tenant_detail(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    return await _tenant_page(request, who, paths.TENANT_ID.from_path(request))


@page
async def tenant_action(request: web.Request) -> web.StreamResponse:
    """verify (evidence reference), suspend, reinstate, terminate (a reason each)."""
    who = await require_user(request, UserRole.OPS)
    tenant_id = paths.TENANT_ID.from_path(request)
    fields = await form(request, who)
    action = request.match_info["action"]
    commands = request.app[appkeys.COMMANDS]
    actor = _actor(who)
    try:
        if action == "verify":
            evidence = validation.reference(
                "evidence_reference", fields.get("evidence_reference", "").strip()
            )
            note = fields.get("note", "").strip()
            await commands.verify_tenant(
                tenant_id, evidence_reference=evidence, actor=actor,
                note=validation.text("note", note, max_len=500) if note else None,
            )
        else:
            reason = validation.text("reason", fields.get("reason", "").strip(), max_len=500)
            change = {
                "suspend": commands.suspend_tenant,
                "reinstate": commands.reinstate_tenant,
                "terminate": commands.terminate_tenant,
            }.get(action)
            if change is None:
                raise web.HTTPNotFound()
            await change(tenant_id, reason=reason, actor=actor)
            if action == "terminate":  # termination revoked the tenant's tokens
                forget_cached_tokens(request.app[appkeys.DATABASE])
    except DomainError as error:
        return await _tenant_page(request, who, tenant_id, status=400, action=action,
                                  **field_error(error))
    return redirect(f"/console/tenants/{tenant_id}")


@page
async def tenant_token(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    tenant_id = paths.TENANT_ID.from_path(request)
    fields = await form(request, who)
    try:
        label = validation.text("label", fields.get("label", "").strip() or "tenant api")
        issued = await request.app[appkeys.COMMANDS].issue_tenant_token(
            tenant_id, label=label, actor=_actor(who)
        )
    except DomainError as error:
        return await _tenant_page(request, who, tenant_id, status=400, **field_error(error))
    return await _tenant_page(request, who, tenant_id, status=201, new_token=issued.secret)


@page
async def revoke_token(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    fields = await form(request, who)
    info = await request.app[appkeys.COMMANDS].revoke_token(
        paths.TOKEN_ID.from_path(request), actor=_actor(who)
    )
    forget_cached_tokens(request.app[appkeys.DATABASE])
    back = fields.get("back", "")
    return redirect(f"/console/tenants/{info.tenant_id}" if info.tenant_id else back or "/console")


def _invitation_url(request: web.Request, token: str) -> str:
    return f"{request.app[appkeys.SETTINGS].public_url}/invitations/{token}"


@page
async def tenant_invite(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    tenant_id = paths.TENANT_ID.from_path(request)
    fields = await form(request, who)
    try:
        invitation = await request.app[web_keys.ACCOUNTS].invite(
            email=fields.get("email", "").strip(), role=UserRole.TENANT, tenant_id=tenant_id,
            actor=_actor(who),
        )
    except DomainError as error:
        return await _tenant_page(request, who, tenant_id, status=400, **field_error(error))
    return await _tenant_page(
        request, who, tenant_id, status=201,
        invitation_url=_invitation_url(request, invitation.token),
        invitation_expires=invitation.expires_at,
    )


# --- users -----------------------------------------------------------------------------


async def _users_page(
    request: web.Request, who: SignedInUser, *, status: int = 200, **extra: Any
) -> web.Response:
    people = await request.app[web_keys.ACCOUNTS].list_users()
    return request.app[web_keys.PAGES].render(
        "console/users.html", status=status, users=people, **_base(who), **extra
    )


@page
async def user_list(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    return await _users_page(request, who)


@page
async def invite_user(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    fields = await form(request, who)
    tenant_id = fields.get("tenant_id", "").strip() or None
    try:
        if tenant_id is not None and not ids.is_id(tenant_id):
            raise InvalidInput("tenant_id", "must be a tenant id, or empty for an ops user")
        role = UserRole.TENANT if tenant_id else UserRole.OPS
        invitation = await request.app[web_keys.ACCOUNTS].invite(
            email=fields.get("email", "").strip(), role=role, tenant_id=tenant_id,
            actor=_actor(who),
        )
    except DomainError as error:
        return await _users_page(request, who, status=400, **field_error(error))
    return await _users_page(
        request, who, status=201, invitation_url=_invitation_url(request, invitation.token),
        invitation_expires=invitation.expires_at,
    )


def _awaiting(approval: Approval) -> str:
    return (f"Requested: approval {approval.id} now waits for a second person "
            "(see Approvals).")


@page
async def disable_user(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    user_id = paths.USER_ID.from_path(request)
    await form(request, who)
    approvals = request.app[appkeys.APPROVALS]
    try:
        async with request.app[appkeys.DATABASE].read() as conn:
            target = await accounts.get_user(conn, user_id)
        if approvals.required and target.role is UserRole.OPS:
            approval = await approvals.request(
                "ops_user.disable", {"user_id": user_id}, actor=_actor(who)
            )
            return await _users_page(request, who, status=202, notice=_awaiting(approval))
        await request.app[web_keys.ACCOUNTS].disable(user_id, actor=_actor(who))
    except DomainError as error:
        return await _users_page(request, who, status=409, **field_error(error))
    return redirect("/console/users")


# --- regulator keys --------------------------------------------------------------------


async def _keys_page(
    request: web.Request, who: SignedInUser, *, status: int = 200, **extra: Any
) -> web.Response:
    async with request.app[appkeys.DATABASE].read() as conn:
        found = await registry.list_keys(conn)
    return request.app[web_keys.PAGES].render(
        "console/keys.html", status=status, keys=found, **_base(who), **extra
    )


@page
async def key_list(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    return await _keys_page(request, who)


@page
async def add_key(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    fields = await form(request, who)
    approvals = request.app[appkeys.APPROVALS]
    try:
        new = {
            "keyid": registry.parse_keyid(fields.get("keyid", "").strip()),
            "public_key": registry.parse_public_key(fields.get("public_key", "").strip()),
            "label": validation.text("label", fields.get("label", "").strip(), max_len=200),
        }
        if approvals.required:
            approval = await approvals.request("regulator_key.register", new, actor=_actor(who))
            return await _keys_page(request, who, status=202, notice=_awaiting(approval))
        await request.app[appkeys.COMMANDS].add_regulator_key(**new, actor=_actor(who))
    except DomainError as error:
        return await _keys_page(request, who, status=400, **field_error(error))
    return redirect("/console/regulator-keys")


@page
async def revoke_key(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    await form(request, who)
    approvals = request.app[appkeys.APPROVALS]
    if approvals.required:
        try:
            approval = await approvals.request(
                "regulator_key.revoke", {"keyid": paths.KEY_ID.from_path(request)},
                actor=_actor(who),
            )
        except DomainError as error:
            return await _keys_page(request, who, status=409, **field_error(error))
        return await _keys_page(request, who, status=202, notice=_awaiting(approval))
    await request.app[appkeys.COMMANDS].revoke_regulator_key(
        paths.KEY_ID.from_path(request), actor=_actor(who)
    )
    return redirect("/console/regulator-keys")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# --- audit log -------------------------------------------------------------------------


def _int_query(request: web.Request, name: str) -> int | None:
    value = request.query.get(name, "")
    if not value:
        return None
    # str.isdigit() accepts digits int() refuses (superscripts): the one parser instead.
    return validation.whole_number(name, value, minimum=0, maximum=2**62)


@page
async def audit(request: web.Request) -> web.StreamResponse:
    who = await require_user(request, UserRole.OPS)
    # The filter form sends empty fields for "any"; anything else passes the API's parsers.
    event_type = request.query.get("type", "").strip()
    if event_type:
        validation.identifier("type", event_type, EVENT_TYPE)
    tenant_id = request.query.get("tenant", "").strip()
    if tenant_id and not ids.is_id(tenant_id):
        raise InvalidInput("tenant", "must be a tenant id")
    before = _int_query(request, "before")
    async with request.app[appkeys.DATABASE].read() as conn:
        rows = await list_entries(conn, limit=AUDIT_PAGE, newest_first=True, before=before,
                                   event_type=event_type or None, tenant_id=tenant_id or None)
    size, _note = await request.app[appkeys.AUDIT_LOG].latest_checkpoint()
    return request.app[web_keys.PAGES].render(
        "console/audit.html", rows=rows, event_type=event_type, tenant=tenant_id,
        older=rows[-1].index if len(rows) == AUDIT_PAGE else None, checkpoint_size=size,
        **_base(who),
    )


@page
async def audit_entry(request: web.Request) -> web.StreamResponse:
    """One entry with its inclusion proof against the latest checkpoint, checked here."""
    who = await require_user(request, UserRole.OPS)
    index = paths.LOG_INDEX.from_path(request)
    log = request.app[appkeys.AUDIT_LOG]
    entries = await log.entries([index])
    if not entries:
        raise web.HTTPNotFound()
    entry = entries[0]
    size, note = await log.latest_checkpoint()
    proof: list[bytes] = []
    verdict = f"not yet covered by a checkpoint (latest covers {size} entries)"
    if index < size:
        proof = (await log.inclusion_proofs([index], size))[index]
        root = await log.root_at(size)
        try:
            merkle.verify_inclusion(entry.leaf_hash, index, size, proof, root)
            verdict = f"included in the signed checkpoint of size {size}"
        except merkle.MerkleError as failed:
            verdict = f"inclusion proof FAILED: {failed}"
    return request.app[web_keys.PAGES].render(
        "console/entry.html", entry=entry, event=entry.event(), leaf_hash=_b64(entry.leaf_hash),
        proof=[_b64(p) for p in proof], checkpoint=note, checkpoint_size=size, verdict=verdict,
        **_base(who),
    )


ROUTES = [
    ("GET", "/console", tenant_list),
    ("GET", "/console/tenants", tenant_list),
    ("POST", "/console/tenants", create_tenant),
    ("GET", "/console/tenants/{tenant_id}", tenant_detail),
    ("POST", "/console/tenants/{tenant_id}/tokens", tenant_token),
    ("POST", "/console/tenants/{tenant_id}/invitations", tenant_invite),
    ("POST", "/console/tenants/{tenant_id}/{action:verify|suspend|reinstate|terminate}",
     tenant_action),
    ("POST", "/console/tokens/{token_id}/revoke", revoke_token),
    ("GET", "/console/users", user_list),
    ("POST", "/console/users", invite_user),
    ("POST", "/console/users/{user_id}/disable", disable_user),
    ("GET", "/console/regulator-keys", key_list),
    ("POST", "/console/regulator-keys", add_key),
    ("POST", "/console/regulator-keys/{keyid}/revoke", revoke_key),
    ("GET", "/console/audit", audit),
    ("GET", "/console/audit/{index}", audit_entry),
]
