"""What each sensitive operation is: its request-time checks, its event summary, and the
function that re-checks its preconditions and performs it when a second principal grants it.

Every `perform` runs in the grant's transaction, after the approval's own lock, so a
precondition that changed since the request (a key revoked meanwhile, the retention
period changed by another approval) refuses the grant and nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.approvals import store
from gateway.approvals.errors import PreconditionChanged
from gateway.egress.mapping import EgressMap
from gateway.egress.store import configure_egress, logged_maps
from gateway.regulator import registry
from provisioning import tokens, validation
from provisioning.accounts import users
from provisioning.accounts.users import UserRole, UserStatus
from provisioning.errors import IllegalTransition, InvalidInput, NotFound
from provisioning.events import Event, Outcome
from provisioning.schema import tokens as token_table
from provisioning.tokens import Role

Payload = Mapping[str, Any]
Result = dict[str, Any]

RETENTION = "audit.retention_days"


@dataclass(frozen=True)
class Operation:
    kind: str
    description: str
    # Fields safe to show and log (never a secret or a hash), for views and events.
    summary: Callable[[Payload], dict[str, str | int]]
    # At request time: refuse what could never be granted (unknown key, own account).
    check: Callable[[AsyncConnection, Payload, str], Awaitable[None]]
    # At grant time: re-check and perform, acting as the requester.
    perform: Callable[[AsyncConnection, Payload, str, datetime], Awaitable[Outcome[Result]]]


async def _nothing(_conn: AsyncConnection, _payload: Payload, _requester: str) -> None:
    return None


def _time(value: datetime | None) -> str | None:
    return validation.rfc3339(value) if value is not None else None


def key_view(key: registry.RegulatorKey) -> Result:
    return {
        "keyid": key.keyid,
        "public_key": key.public_key,
        "label": key.label,
        "created_at": _time(key.created_at),
        "created_by": key.created_by,
        "revoked_at": _time(key.revoked_at),
    }


# --- regulator keys -------------------------------------------------------------------


async def _check_new_key(conn: AsyncConnection, payload: Payload, _requester: str) -> None:
    if await registry.is_registered(conn, payload["keyid"]):
        raise registry.DuplicateKeyId(
            f"key id {payload['keyid']!r} is already registered; choose another key id "
            "(a revoked key id is never reused)"
        )


async def _register_key(
    conn: AsyncConnection, payload: Payload, actor: str, now: datetime
) -> Outcome[Result]:
    if await registry.is_registered(conn, payload["keyid"]):
        raise PreconditionChanged(
            f"key id {payload['keyid']!r} was registered since this was requested; "
            "reject this approval"
        )
    added = await registry.add_key(
        conn, keyid=payload["keyid"], public_key=payload["public_key"], label=payload["label"],
        actor=actor, now=now,
    )
    return Outcome(key_view(added.value), added.events)


async def _check_key_active(conn: AsyncConnection, payload: Payload, _requester: str) -> None:
    if await registry.active_key(conn, payload["keyid"]) is None:
        if await registry.is_registered(conn, payload["keyid"]):
            raise IllegalTransition(f"regulator key {payload['keyid']!r} is already revoked")
        raise NotFound(f"no regulator key with key id {payload['keyid']!r}")


async def _revoke_key(
    conn: AsyncConnection, payload: Payload, actor: str, now: datetime
) -> Outcome[Result]:
    if await registry.active_key(conn, payload["keyid"]) is None:
        raise PreconditionChanged(
            f"regulator key {payload['keyid']!r} is no longer active (revoked since this was "
            "requested); nothing to do"
        )
    revoked = await registry.revoke_key(conn, payload["keyid"], actor=actor, now=now)
    return Outcome(key_view(revoked.value), revoked.events)


# --- ops tokens -----------------------------------------------------------------------


async def _issue_ops_token(
    conn: AsyncConnection, payload: Payload, actor: str, now: datetime
) -> Outcome[Result]:
    taken = await conn.scalar(
        select(token_table.c.id).where(token_table.c.id == payload["token_id"])
    )
    if taken is not None:
        raise PreconditionChanged(f"token id {payload['token_id']} exists already; request again")
    issued = await tokens.insert_token(
        conn, Role.OPS, token_id=payload["token_id"], secret_hash=payload["secret_hash"],
        tenant_id=None, label=payload["label"], actor=actor, now=now,
    )
    info = issued.value
    return Outcome(
        {"id": info.token_id, "role": info.role.value, "label": info.label,
         "created_at": _time(info.created_at), "created_by": info.created_by},
        issued.events,
    )


# --- ops users ------------------------------------------------------------------------


async def _check_disable(conn: AsyncConnection, payload: Payload, requester: str) -> None:
    user = await users.get_user(conn, payload["user_id"])
    if user.role is not UserRole.OPS:
        raise InvalidInput("user_id", "names a tenant admin; only ops users need approval")
    if user.actor == requester:
        raise IllegalTransition("you cannot disable your own account; ask another ops user")
    if user.status is UserStatus.DISABLED:
        raise IllegalTransition(f"user {user.id} is already disabled")


async def _disable_user(
    conn: AsyncConnection, payload: Payload, actor: str, now: datetime
) -> Outcome[Result]:
    user = await users.get_user(conn, payload["user_id"])
    if user.status is UserStatus.DISABLED:
        raise PreconditionChanged(f"user {user.id} was disabled since this was requested")
    disabled = await users.disable_user(conn, user.id, actor=actor, now=now)
    return Outcome(
        {"id": disabled.value.id, "email": disabled.value.email,
         "status": disabled.value.status.value},
        disabled.events,
    )


# --- sensitive settings ---------------------------------------------------------------


async def _check_retention(conn: AsyncConnection, payload: Payload, _requester: str) -> None:
    if payload["retention_days"] == payload["previous_days"]:
        raise InvalidInput("retention_days", f"is already {payload['retention_days']}")


async def _change_retention(
    conn: AsyncConnection, payload: Payload, actor: str, now: datetime
) -> Outcome[Result]:
    in_force = await store.setting_in_force(conn, RETENTION)
    if in_force is None or int(in_force) != payload["previous_days"]:
        raise PreconditionChanged(
            f"the retention period in force is now {in_force} days, not the "
            f"{payload['previous_days']} this change was requested against; reject this "
            "approval and request the change again"
        )
    await store.set_setting(conn, RETENTION, str(payload["retention_days"]), by=actor, now=now)
    return Outcome(
        {"retention_days": payload["retention_days"]},
        (retention_changed(payload["retention_days"], payload["previous_days"], actor),),
    )


def retention_changed(days: int, previous: int, actor: str) -> Event:
    return Event(
        "retention.changed", {"retention_days": days, "previous_days": previous, "actor": actor}
    )


async def _change_egress(
    conn: AsyncConnection, payload: Payload, actor: str, now: datetime
) -> Outcome[Result]:
    gateway_id = payload["to"]["gateway_id"]
    logged = (await logged_maps(conn, [gateway_id])).get(gateway_id)
    if logged is None or _fields(logged) != json.dumps(payload["from"], sort_keys=True):
        raise PreconditionChanged(
            f"the egress mapping of gateway {gateway_id} changed since this was requested; "
            "reject this approval and request the change again"
        )
    outcome = await configure_egress(conn, EgressMap.from_event(payload["to"]), now=now,
                                     actor=actor)
    return Outcome({"gateway_id": gateway_id, "applies": "at the next start of vpngw serve"},
                   outcome.events)


def _fields(egress: EgressMap) -> str:
    return json.dumps(egress.event_fields(), sort_keys=True)


def _egress_summary(payload: Payload) -> dict[str, str | int]:
    to, was = payload["to"], payload["from"]
    changed = sorted(k for k in set(to) | set(was) if to.get(k) != was.get(k))
    return {"gateway_id": to["gateway_id"], "changed": ",".join(changed)}


OPERATIONS: dict[str, Operation] = {
    op.kind: op
    for op in (
        Operation(
            "regulator_key.register", "Register a regulator key",
            lambda p: {"keyid": p["keyid"], "public_key": p["public_key"], "label": p["label"]},
            _check_new_key, _register_key,
        ),
        Operation(
            "regulator_key.revoke", "Revoke a regulator key",
            lambda p: {"keyid": p["keyid"]}, _check_key_active, _revoke_key,
        ),
        Operation(
            "ops_token.issue", "Issue an ops token",
            lambda p: {"token_id": p["token_id"], "label": p["label"]}, _nothing,
            _issue_ops_token,
        ),
        Operation(
            "ops_user.disable", "Disable an ops user",
            lambda p: {"user_id": p["user_id"]}, _check_disable, _disable_user,
        ),
        Operation(
            "retention.change", "Change the audit log's retention period",
            lambda p: {"retention_days": p["retention_days"],
                       "previous_days": p["previous_days"]},
            _check_retention, _change_retention,
        ),
        Operation(
            "egress.change", "Apply changed egress settings", _egress_summary, _nothing,
            _change_egress,
        ),
    )
}
