"""Users and their invitations: invite, activate once, disable; events name who did it."""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning import ids, validation
from provisioning.accounts.errors import DuplicateUser, InvitationUnavailable
from provisioning.accounts.schema import user_invitations, users, web_sessions
from provisioning.errors import IllegalTransition, InvalidInput, NotFound
from provisioning.events import Event, Outcome
from provisioning.tenants import TenantStatus, get_tenant

INVITATION_TOKEN_BYTES = 24  # 192 bits, as for config links


class UserRole(enum.StrEnum):
    OPS = "ops"
    TENANT = "tenant"


class UserStatus(enum.StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    DISABLED = "disabled"


@dataclass(frozen=True)
class User:
    id: str
    email: str
    role: UserRole
    tenant_id: str | None
    status: UserStatus
    has_totp: bool
    created_at: datetime
    created_by: str
    activated_at: datetime | None
    last_signin_at: datetime | None
    disabled_at: datetime | None

    @property
    def actor(self) -> str:
        """How audit events name this person."""
        return user_actor(self.id)

    @classmethod
    def from_row(cls, row: Any) -> User:
        m = row._mapping
        return cls(
            id=m["id"],
            email=m["email"],
            role=UserRole(m["role"]),
            tenant_id=m["tenant_id"],
            status=UserStatus(m["status"]),
            has_totp=m["totp_secret"] is not None,
            created_at=m["created_at"],
            created_by=m["created_by"],
            activated_at=m["activated_at"],
            last_signin_at=m["last_signin_at"],
            disabled_at=m["disabled_at"],
        )


@dataclass(frozen=True)
class Invitation:
    token: str
    user: User
    expires_at: datetime

    def __repr__(self) -> str:
        return f"Invitation(user_id={self.user.id!r}, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class Activation:
    """What a person chose when accepting an invitation (already checked)."""

    password_hash: str
    totp_secret: str | None
    totp_step: int | None

    def __repr__(self) -> str:
        return f"Activation(totp={self.totp_secret is not None})"


def user_actor(user_id: str) -> str:
    return f"user:{user_id}"


def normalise_email(value: object) -> str:
    return validation.email("email", value).lower()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _attrs(user_id: str, role: UserRole, tenant_id: str | None, actor: str) -> dict[str, str | int]:
    attrs: dict[str, str | int] = {"user_id": user_id, "role": role.value, "actor": actor}
    if tenant_id:
        attrs["tenant_id"] = tenant_id
    return attrs


async def get_user(conn: AsyncConnection, user_id: str, *, tenant_id: str | None = None) -> User:
    query = select(users).where(users.c.id == user_id)
    if tenant_id is not None:
        query = query.where(users.c.tenant_id == tenant_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no user with id {user_id}")
    return User.from_row(row)


async def list_users(conn: AsyncConnection, *, tenant_id: str | None = None) -> list[User]:
    query = select(users).order_by(users.c.created_at, users.c.id)
    if tenant_id is not None:
        query = query.where(users.c.tenant_id == tenant_id)
    return [User.from_row(r) for r in (await conn.execute(query)).all()]


async def has_active_ops_user(conn: AsyncConnection) -> bool:
    found = await conn.scalar(
        select(users.c.id).where(
            users.c.role == UserRole.OPS.value, users.c.status == UserStatus.ACTIVE.value
        ).limit(1)
    )
    return found is not None


async def invite_user(
    conn: AsyncConnection,
    *,
    email: str,
    role: UserRole,
    tenant_id: str | None,
    actor: str,
    now: datetime,
    ttl: timedelta,
) -> Outcome[Invitation]:
    """A new invited user (or a fresh invitation for one not yet activated)."""
    if role is UserRole.TENANT:
        if not tenant_id:
            raise InvalidInput("tenant_id", "a tenant admin must belong to a tenant")
        tenant = await get_tenant(conn, tenant_id)
        if tenant.status is TenantStatus.TERMINATED:
            raise IllegalTransition("a terminated tenant cannot get new users")
    elif tenant_id:
        raise InvalidInput("tenant_id", "ops users belong to the provider, not to a tenant")
    row = (await conn.execute(select(users).where(users.c.email == email))).first()
    if row is not None:
        existing = User.from_row(row)
        if existing.status is not UserStatus.INVITED or existing.role is not role or (
            existing.tenant_id != tenant_id
        ):
            raise DuplicateUser(f"a user with e-mail {email} already exists", user_id=existing.id)
        # Re-inviting: older links stop working, only the newest one counts.
        await conn.execute(
            update(user_invitations)
            .where(user_invitations.c.user_id == existing.id, user_invitations.c.used_at.is_(None))
            .values(used_at=now)
        )
        user = existing
    else:
        user_id = ids.new_id(int(now.timestamp() * 1000))
        await conn.execute(
            insert(users).values(
                id=user_id,
                email=email,
                role=role.value,
                tenant_id=tenant_id,
                status=UserStatus.INVITED.value,
                created_at=now,
                created_by=actor,
            )
        )
        user = await get_user(conn, user_id)
    token = secrets.token_urlsafe(INVITATION_TOKEN_BYTES)
    await conn.execute(
        insert(user_invitations).values(
            token_hash=token_hash(token), user_id=user.id, created_at=now, expires_at=now + ttl
        )
    )
    event = Event("user.invited", _attrs(user.id, role, tenant_id, actor))
    return Outcome(Invitation(token, user, now + ttl), (event,))


def _unavailable() -> InvitationUnavailable:
    return InvitationUnavailable(
        "this invitation is unknown, already used or expired; ask your provider for a new one"
    )


async def open_invitation(conn: AsyncConnection, token: str, *, now: datetime) -> User:
    """The invited user, if the invitation can still be accepted (it is not used up here)."""
    if not 16 <= len(token) <= 128:
        raise _unavailable()
    row = (
        await conn.execute(
            select(users)
            .join(user_invitations, user_invitations.c.user_id == users.c.id)
            .where(
                user_invitations.c.token_hash == token_hash(token),
                user_invitations.c.used_at.is_(None),
                user_invitations.c.expires_at > now,
                users.c.status == UserStatus.INVITED.value,
            )
        )
    ).first()
    if row is None:
        raise _unavailable()
    return User.from_row(row)


async def accept_invitation(
    conn: AsyncConnection, token: str, activation: Activation, *, now: datetime
) -> Outcome[User]:
    """Use the invitation up (once, even under concurrency) and activate its user."""
    user = await open_invitation(conn, token, now=now)
    if user.role is UserRole.OPS and activation.totp_secret is None:
        raise InvalidInput("totp_code", "ops users must set up a second factor (TOTP)")
    claimed = await conn.execute(
        update(user_invitations)
        .where(
            user_invitations.c.token_hash == token_hash(token),
            user_invitations.c.used_at.is_(None),
            user_invitations.c.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise _unavailable()
    await conn.execute(
        update(users)
        .where(users.c.id == user.id)
        .values(
            status=UserStatus.ACTIVE.value,
            password_hash=activation.password_hash,
            totp_secret=activation.totp_secret,
            totp_last_step=activation.totp_step,
            activated_at=now,
        )
    )
    activated = await get_user(conn, user.id)
    attrs = _attrs(user.id, user.role, user.tenant_id, user.actor)
    attrs["second_factor"] = "totp" if activation.totp_secret else "none"
    return Outcome(activated, (Event("user.activated", attrs),))


async def disable_user(
    conn: AsyncConnection, user_id: str, *, actor: str, now: datetime
) -> Outcome[User]:
    """Disable a user and end every session they have, in the same transaction."""
    user = await get_user(conn, user_id)
    if actor == user.actor:
        raise IllegalTransition("you cannot disable your own account; ask another ops user")
    if user.status is UserStatus.DISABLED:
        return Outcome(user)
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(status=UserStatus.DISABLED.value, disabled_at=now, disabled_by=actor)
    )
    await conn.execute(
        update(web_sessions)
        .where(web_sessions.c.user_id == user_id, web_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await conn.execute(
        update(user_invitations)
        .where(user_invitations.c.user_id == user_id, user_invitations.c.used_at.is_(None))
        .values(used_at=now)
    )
    event = Event("user.disabled", _attrs(user_id, user.role, user.tenant_id, actor))
    return Outcome(await get_user(conn, user_id), (event,))
