"""Tenant onboarding and its verification state machine, with who/when/why recorded."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning import ids, validation
from provisioning.errors import (
    DuplicateTenant,
    IllegalTransition,
    InvalidInput,
    NotFound,
    TenantNotVerified,
    TenantSuspended,
)
from provisioning.events import Event, Outcome
from provisioning.schema import tenant_transitions, tenants

LEGAL_NAME_MAX = 200
REFERENCE_MAX = 64  # registration number, tax id
MAX_PEERS_LIMIT = 1_000_000
REASON_MAX = 500  # suspension, reinstatement, termination reasons and verification notes


class TenantStatus(enum.StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Action(enum.StrEnum):
    VERIFY = "verify"
    SUSPEND = "suspend"
    REINSTATE = "reinstate"
    TERMINATE = "terminate"


# pending → verified → suspended ⇄ verified → terminated. A pending applicant can
# also be turned down (terminated) without ever being verified.
_TRANSITIONS: dict[tuple[TenantStatus, Action], TenantStatus] = {
    (TenantStatus.PENDING, Action.VERIFY): TenantStatus.VERIFIED,
    (TenantStatus.PENDING, Action.TERMINATE): TenantStatus.TERMINATED,
    (TenantStatus.VERIFIED, Action.SUSPEND): TenantStatus.SUSPENDED,
    (TenantStatus.VERIFIED, Action.TERMINATE): TenantStatus.TERMINATED,
    (TenantStatus.SUSPENDED, Action.REINSTATE): TenantStatus.VERIFIED,
    (TenantStatus.SUSPENDED, Action.TERMINATE): TenantStatus.TERMINATED,
}

_EVENT_TYPES = {
    Action.VERIFY: "tenant.verified",
    Action.SUSPEND: "tenant.suspended",
    Action.REINSTATE: "tenant.reinstated",
    Action.TERMINATE: "tenant.terminated",
}


def next_status(current: TenantStatus, action: Action) -> TenantStatus:
    try:
        return _TRANSITIONS[(current, action)]
    except KeyError:
        allowed = sorted(a.value for (s, a) in _TRANSITIONS if s is current)
        hint = f"allowed from {current.value}: {', '.join(allowed)}" if allowed else "it is final"
        raise IllegalTransition(
            f"cannot {action.value} a tenant that is {current.value} ({hint})",
            tenant_status=current.value,
        ) from None


@dataclass(frozen=True)
class NewTenant:
    legal_name: str
    registration_number: str
    tax_id: str
    country: str
    contact_email: str
    max_peers: int

    @classmethod
    def parse(cls, body: dict[str, Any], *, default_max_peers: int) -> NewTenant:
        return cls(
            legal_name=validation.text(
                "legal_name", body.get("legal_name"), max_len=LEGAL_NAME_MAX
            ),
            registration_number=validation.reference(
                "registration_number", body.get("registration_number"), max_len=REFERENCE_MAX
            ),
            tax_id=validation.reference("tax_id", body.get("tax_id"), max_len=REFERENCE_MAX),
            country=validation.country("country", body.get("country")),
            contact_email=validation.email("contact_email", body.get("contact_email")),
            max_peers=validation.integer(
                "max_peers",
                body.get("max_peers", default_max_peers),
                minimum=1,
                maximum=MAX_PEERS_LIMIT,
            ),
        )


@dataclass(frozen=True)
class Tenant:
    id: str
    legal_name: str
    registration_number: str
    tax_id: str
    country: str
    contact_email: str
    max_peers: int
    status: TenantStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Tenant:
        m = row._mapping
        return cls(
            **{k: m[k] for k in cls.__dataclass_fields__ if k != "status"},
            status=TenantStatus(m["status"]),
        )


@dataclass(frozen=True)
class Transition:
    from_status: str | None
    to_status: str
    actor: str
    at: datetime
    evidence_reference: str | None
    reason: str | None


async def create_tenant(
    conn: AsyncConnection, new: NewTenant, *, actor: str, now: datetime
) -> Outcome[Tenant]:
    tenant_id = ids.new_id()
    existing = await conn.scalar(
        select(tenants.c.id).where(
            tenants.c.country == new.country,
            tenants.c.registration_number == new.registration_number,
        )
    )
    if existing:
        raise DuplicateTenant(
            f"a tenant with registration number {new.registration_number} in {new.country} "
            f"already exists ({existing})",
            tenant_id=existing,
        )
    values = {
        **new.__dict__,
        "id": tenant_id,
        "status": TenantStatus.PENDING.value,
        "created_at": now,
        "updated_at": now,
    }
    try:
        await conn.execute(insert(tenants).values(values))
    except IntegrityError as exc:  # a concurrent onboarding of the same company
        raise DuplicateTenant(
            f"a tenant with registration number {new.registration_number} in {new.country} "
            "already exists"
        ) from exc
    await conn.execute(
        insert(tenant_transitions).values(
            tenant_id=tenant_id,
            from_status=None,
            to_status=TenantStatus.PENDING.value,
            actor=actor,
            at=now,
            evidence_reference=None,
            reason=None,
        )
    )
    tenant = Tenant(
        id=tenant_id, status=TenantStatus.PENDING, created_at=now, updated_at=now, **new.__dict__
    )
    event = Event(
        "tenant.created",
        {
            "tenant_id": tenant_id,
            "legal_name": new.legal_name,
            "registration_number": new.registration_number,
            "country": new.country,
            "actor": actor,
        },
    )
    return Outcome(tenant, (event,))


# Hot-path statements are built once and executed with parameters: a fresh
# select(...) per call costs SQLAlchemy statement construction and cache-key
# generation every time, a third or more of a small query's CPU (peer provisioning).
_TENANT_BY_ID = select(tenants).where(tenants.c.id == bindparam("tenant_id"))
_TENANT_BY_ID_FOR_UPDATE = _TENANT_BY_ID.with_for_update()
_COUNT_ACTIVE_PEERS = select(tenants.c.active_peers).where(
    tenants.c.id == bindparam("tenant_id")
)


async def get_tenant(conn: AsyncConnection, tenant_id: str, *, lock: bool = False) -> Tenant:
    query = _TENANT_BY_ID_FOR_UPDATE if lock else _TENANT_BY_ID
    row = (
        (await conn.execute(query, {"tenant_id": tenant_id})).first()
        if ids.is_id(tenant_id)
        else None
    )
    if row is None:
        raise NotFound(f"no tenant with id {tenant_id}")
    return Tenant.from_row(row)


def require_verified(tenant: Tenant, *, refused: str) -> None:
    """Refuse `refused` (e.g. "config downloads") unless the tenant is verified right now."""
    if tenant.status is TenantStatus.VERIFIED:
        return
    if tenant.status is TenantStatus.SUSPENDED:
        raise TenantSuspended(
            f"tenant is suspended: {refused} are refused until the provider reinstates it — "
            "contact the provider's operations team",
            tenant_status=tenant.status.value,
        )
    raise TenantNotVerified(
        f"tenant is {tenant.status.value}: {refused} are only for verified tenants",
        tenant_status=tenant.status.value,
    )


async def list_tenants(
    conn: AsyncConnection, *, limit: int, after: str | None, status: TenantStatus | None
) -> list[Tenant]:
    query = select(tenants).order_by(tenants.c.id).limit(limit)
    if after:
        query = query.where(tenants.c.id > after)
    if status:
        query = query.where(tenants.c.status == status.value)
    return [Tenant.from_row(r) for r in (await conn.execute(query)).all()]


async def count_active_peers(conn: AsyncConnection, tenant_id: str) -> int:
    return int(await conn.scalar(_COUNT_ACTIVE_PEERS, {"tenant_id": tenant_id}) or 0)


async def transition_tenant(
    conn: AsyncConnection,
    tenant_id: str,
    action: Action,
    *,
    actor: str,
    now: datetime,
    evidence_reference: str | None = None,
    reason: str | None = None,
) -> Outcome[Tenant]:
    """Apply one state-machine step; the caller handles what it means for peers."""
    if action is Action.VERIFY and not evidence_reference:
        raise InvalidInput("evidence_reference", "is required to verify a tenant")
    if action is not Action.VERIFY and not reason:
        raise InvalidInput("reason", f"is required to {action.value} a tenant")
    tenant = await get_tenant(conn, tenant_id, lock=True)
    new_status = next_status(tenant.status, action)
    await conn.execute(
        update(tenants)
        .where(tenants.c.id == tenant_id)
        .values(status=new_status.value, updated_at=now)
    )
    await conn.execute(
        insert(tenant_transitions).values(
            tenant_id=tenant_id,
            from_status=tenant.status.value,
            to_status=new_status.value,
            actor=actor,
            at=now,
            evidence_reference=evidence_reference,
            reason=reason,
        )
    )
    attrs: dict[str, str | int] = {"tenant_id": tenant_id, "actor": actor}
    if evidence_reference:
        attrs["evidence_reference"] = evidence_reference
    if reason:
        attrs["reason"] = reason
    updated = Tenant(**{**tenant.__dict__, "status": new_status, "updated_at": now})
    return Outcome(updated, (Event(_EVENT_TYPES[action], attrs),))


async def list_transitions(conn: AsyncConnection, tenant_id: str) -> list[Transition]:
    rows = (
        await conn.execute(
            select(tenant_transitions)
            .where(tenant_transitions.c.tenant_id == tenant_id)
            .order_by(tenant_transitions.c.id)
        )
    ).all()
    return [
        Transition(r.from_status, r.to_status, r.actor, r.at, r.evidence_reference, r.reason)
        for r in rows
    ]
