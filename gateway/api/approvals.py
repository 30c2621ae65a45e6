"""Ops API for two-person control: list, grant and reject approvals; request held settings."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.api import schemas
from gateway.approvals.errors import ApprovalsOff
from gateway.approvals.policy import Approval, Status
from gateway.approvals.service import Approvals
from gateway.http import appkeys
from gateway.http.auth import require
from gateway.http.body import read_json
from gateway.http.params import Choice, Identifier, WholeNumber
from gateway.http.routes import NO_STORE, Route, json_reply, obj, ref
from provisioning import ids, tokens, validation
from provisioning.errors import InvalidInput
from provisioning.tokens import Role

APPROVAL_ID = Identifier("approval_id", ids.UUID, location="path",
                         description="The approval's id")
STATUS = Choice("status", schemas.APPROVAL_STATUSES, description="Only approvals in this state")
LIMIT = WholeNumber("limit", minimum=1, maximum=500, default=100,
                    description="How many, newest first (at most 500)")
RETENTION_MAX = 36500


def _approvals(request: web.Request) -> Approvals:
    return request.app[appkeys.APPROVALS]


def pending(request: web.Request, approval: Approval, **extra: Any) -> web.Response:
    """The 202 every gated operation answers while it waits for a second principal."""
    return web.json_response(
        {"approval": _approvals(request).view(approval), **extra},
        status=202,
        headers={"Location": f"/ops/v1/approvals/{approval.id}", "Cache-Control": "no-store"},
    )


# --- gates used by the handlers of sensitive operations --------------------------------


async def gate_key_registration(
    request: web.Request, *, actor: str, keyid: str, public_key: str, label: str
) -> web.Response | None:
    """A 202 pending approval, or None when approvals are off (register at once)."""
    approvals = _approvals(request)
    if not approvals.required:
        return None
    approval = await approvals.request(
        "regulator_key.register", {"keyid": keyid, "public_key": public_key, "label": label},
        actor=actor,
    )
    return pending(request, approval)


async def gate_key_revocation(
    request: web.Request, *, actor: str, keyid: str
) -> web.Response | None:
    approvals = _approvals(request)
    if not approvals.required:
        return None
    approval = await approvals.request("regulator_key.revoke", {"keyid": keyid}, actor=actor)
    return pending(request, approval)


# --- approvals -------------------------------------------------------------------------


async def list_approvals(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    status = STATUS.optional(request)
    found = await _approvals(request).list(
        status=Status(status) if status else None, limit=LIMIT.value(request)
    )
    return web.json_response({"items": [_approvals(request).view(a) for a in found]})


async def get_approval(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    approval = await _approvals(request).get(APPROVAL_ID.value(request))
    return web.json_response(_approvals(request).view(approval))


async def grant(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    approvals = _approvals(request)
    approval, result = await approvals.grant(APPROVAL_ID.value(request), actor=who.actor)
    return web.json_response({"approval": approvals.view(approval), "result": result})


async def reject(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"reason"}, optional=True)
    reason = body.get("reason")
    if reason is not None:
        reason = validation.text("reason", reason, max_len=500)
    approvals = _approvals(request)
    approval = await approvals.reject(APPROVAL_ID.value(request), actor=who.actor, reason=reason)
    return web.json_response(approvals.view(approval))


# --- ops tokens ------------------------------------------------------------------------


async def issue_ops_token(request: web.Request) -> web.Response:
    """The token is minted now and shown to its requester only; it is stored (and works)
    once a second principal approves, so the approver never sees the secret."""
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"label"}, optional=True)
    label = validation.text("label", body.get("label", "ops"))
    approvals = _approvals(request)
    if not approvals.required:
        issued = await request.app[appkeys.COMMANDS].issue_ops_token(label=label, actor=who.actor)
        return web.json_response(
            {"id": issued.token_id, "token": issued.secret, "role": issued.role.value,
             "tenant_id": None, "label": issued.label},
            status=201, headers={"Cache-Control": "no-store"},
        )
    token_id, bearer, secret_hash = tokens.mint(Role.OPS)
    approval = await approvals.request(
        "ops_token.issue", {"token_id": token_id, "secret_hash": secret_hash, "label": label},
        actor=who.actor,
    )
    return pending(request, approval, token=bearer)


# --- sensitive settings ----------------------------------------------------------------


async def get_retention(request: web.Request) -> web.Response:
    await require(request, Role.OPS)
    from gateway.approvals.pinned import retention_in_force

    settings = request.app[appkeys.SETTINGS]
    in_force = await retention_in_force(request.app[appkeys.DATABASE],
                                        settings.audit.retention_days)
    return web.json_response({
        "retention_days": in_force,
        "in_settings": settings.audit.retention_days,
        "held": in_force != settings.audit.retention_days,
    })


async def request_retention(request: web.Request) -> web.Response:
    who = await require(request, Role.OPS)
    body = await read_json(request, allowed={"retention_days"})
    days = body.get("retention_days")
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= RETENTION_MAX:
        raise InvalidInput("retention_days",
                           f"must be a whole number of days, 1 to {RETENTION_MAX}")
    approvals = _approvals(request)
    if not approvals.required:
        raise ApprovalsOff(
            "with approvals.required = false the retention period is audit.retention_days in "
            "gateway.toml; change it there and restart"
        )
    from gateway.approvals.pinned import retention_in_force

    settings = request.app[appkeys.SETTINGS]
    in_force = await retention_in_force(request.app[appkeys.DATABASE],
                                        settings.audit.retention_days)
    approval = await approvals.request(
        "retention.change", {"retention_days": days, "previous_days": in_force},
        actor=who.actor,
    )
    return pending(request, approval)


async def request_egress_change(request: web.Request) -> web.Response:
    """Ask to apply the egress settings this process found changed and held at start."""
    who = await require(request, Role.OPS)
    approvals = _approvals(request)
    if not approvals.required:
        raise ApprovalsOff("with approvals.required = false changed egress settings apply at "
                           "start; there is nothing to request")
    held = request.app.get(appkeys.EGRESS_HELD)
    plan = request.app.get(appkeys.EGRESS)
    if held is None or plan is None:
        raise InvalidInput("egress", "no changed egress settings are held here: the mapping in "
                           "force is what gateway.toml says (edit it and restart first)")
    approval = await approvals.request(
        "egress.change",
        {"from": json.loads(json.dumps(plan.egress.event_fields())),
         "to": json.loads(json.dumps(held.event_fields()))},
        actor=who.actor,
    )
    return pending(request, approval)


PENDING_REPLY = json_reply(202, "Waiting for a second ops principal (two-person control)",
                      ref("PendingApproval"), headers={"Location": {
                          "description": "The approval's URL", "schema": {"type": "string"}}})
_DECISION_ERRORS = {
    403: ("approval-same-principal",),
    409: ("approval-expired", "approval-decided", "approval-precondition-changed"),
}

ROUTES = [
    Route("GET", "/ops/v1/approvals", list_approvals,
          "Sensitive operations waiting for (or decided by) a second ops principal", "ops",
          params=(STATUS, LIMIT),
          replies=(json_reply(200, "Approvals, newest first", ref("ApprovalList")),)),
    Route("GET", "/ops/v1/approvals/{approval_id}", get_approval, "One approval", "ops",
          params=(APPROVAL_ID,),
          replies=(json_reply(200, "The approval", ref("Approval")),)),
    Route("POST", "/ops/v1/approvals/{approval_id}/approval", grant,
          "Approve: the operation is re-checked and performed now, as its requester asked",
          "ops", params=(APPROVAL_ID,),
          replies=(json_reply(200, "Granted and performed", ref("GrantedApproval")),),
          errors={**_DECISION_ERRORS, 404: ("not-found",),
                  409: (*_DECISION_ERRORS[409], "duplicate-keyid", "illegal-transition")}),
    Route("POST", "/ops/v1/approvals/{approval_id}/rejection", reject,
          "Reject (or, by its requester, withdraw): the operation never happens", "ops",
          params=(APPROVAL_ID,), body=obj({"reason": schemas.text(500)}), body_required=False,
          replies=(json_reply(200, "Rejected", ref("Approval")),),
          errors={409: ("approval-expired", "approval-decided")}),
    Route("POST", "/ops/v1/ops-tokens", issue_ops_token,
          "Issue an ops token (with approvals required: shown now, works once approved)",
          "ops", body=obj({"label": {**schemas.text(64), "default": "ops"}}),
          body_required=False,
          replies=(json_reply(201, "Issued (approvals off)", ref("IssuedToken"),
                              headers=NO_STORE), PENDING_REPLY)),
    Route("GET", "/ops/v1/retention", get_retention,
          "The audit log's retention period in force, and the settings file's value", "ops",
          replies=(json_reply(200, "Retention", {"type": "object", "properties": {
              "retention_days": schemas.INTEGER, "in_settings": schemas.INTEGER,
              "held": schemas.BOOLEAN}}),)),
    Route("PUT", "/ops/v1/retention", request_retention,
          "Request a new retention period (applied once a second ops principal approves)",
          "ops", body=obj({"retention_days": {"type": "integer", "minimum": 1,
                                              "maximum": RETENTION_MAX}}, "retention_days"),
          replies=(PENDING_REPLY,), errors={409: ("approvals-off",)}),
    Route("POST", "/ops/v1/egress/change-requests", request_egress_change,
          "Request that the egress settings held at start be applied (two-person control)",
          "ops", replies=(PENDING_REPLY,), errors={409: ("approvals-off",)}),
]
