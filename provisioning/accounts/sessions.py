"""Server-side web sessions: the cookie holds a random token, the database its hash.

A session stops working at once when it is signed out, when its user is disabled,
and when its tenant is suspended or terminated (any session older than the tenant's
latest suspension or termination is dead, whichever path made that change).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning.accounts.schema import users, web_sessions
from provisioning.accounts.users import User, UserStatus, token_hash
from provisioning.schema import tenant_transitions

SESSION_TOKEN_BYTES = 32
_ENDS_SESSIONS = ("suspended", "terminated")


@dataclass(frozen=True)
class NewSession:
    token: str
    csrf_token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"NewSession(expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class SignedInUser:
    """The person behind a live session, and the CSRF token their forms must carry."""

    user: User
    csrf_token: str
    session_started: datetime


async def create_session(
    conn: AsyncConnection, user_id: str, *, address: str, now: datetime, lifetime: timedelta
) -> NewSession:
    token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    csrf = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
    await conn.execute(
        insert(web_sessions).values(
            token_hash=token_hash(token),
            user_id=user_id,
            csrf_token=csrf,
            address=address[:64],
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return NewSession(token, csrf, now + lifetime)


async def resolve_session(
    conn: AsyncConnection, token: str, *, now: datetime
) -> SignedInUser | None:
    if not 16 <= len(token) <= 128:
        return None
    row = (
        await conn.execute(
            select(users, web_sessions.c.csrf_token, web_sessions.c.created_at.label("started"))
            .join(web_sessions, web_sessions.c.user_id == users.c.id)
            .where(
                web_sessions.c.token_hash == token_hash(token),
                web_sessions.c.revoked_at.is_(None),
                web_sessions.c.expires_at > now,
                users.c.status == UserStatus.ACTIVE.value,
            )
        )
    ).first()
    if row is None:
        return None
    user = User.from_row(row)
    if user.tenant_id is not None:
        ended = await conn.scalar(
            select(func.max(tenant_transitions.c.at)).where(
                tenant_transitions.c.tenant_id == user.tenant_id,
                tenant_transitions.c.to_status.in_(_ENDS_SESSIONS),
            )
        )
        if ended is not None and ended >= row.started:
            return None
    return SignedInUser(user, row.csrf_token, row.started)


async def end_session(conn: AsyncConnection, token: str, *, now: datetime) -> None:
    await conn.execute(
        update(web_sessions)
        .where(web_sessions.c.token_hash == token_hash(token), web_sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def forget_dead_sessions(conn: AsyncConnection, user_id: str, *, now: datetime) -> None:
    """Drop a user's expired or ended session rows (their story is in the audit log)."""
    await conn.execute(
        delete(web_sessions).where(
            web_sessions.c.user_id == user_id,
            or_(web_sessions.c.expires_at <= now, web_sessions.c.revoked_at.is_not(None)),
        )
    )
