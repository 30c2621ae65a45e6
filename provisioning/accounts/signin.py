"""Sign-in checks and throttling: failures are counted per account and per address.

Throttling refuses even a right password while a limit is reached, so guessing
cannot go on in the background. Failed sign-ins reach the audit log sparsely
(at most one event per account per LOG_EVERY) so a password-guessing run cannot
flood the log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning.accounts import totp
from provisioning.accounts.schema import signin_failures, users
from provisioning.accounts.sessions import NewSession, create_session, forget_dead_sessions
from provisioning.accounts.users import User
from provisioning.events import Event, Outcome


@dataclass(frozen=True)
class ThrottlePolicy:
    window: timedelta = timedelta(minutes=15)
    per_account: int = 5
    per_address: int = 20
    log_every: timedelta = timedelta(minutes=1)


@dataclass(frozen=True)
class Credentials:
    """What the database holds to check a sign-in (never leaves the sign-in path)."""

    user: User
    password_hash: str | None
    totp_secret: str | None
    totp_last_step: int | None

    def __repr__(self) -> str:
        return f"Credentials(user_id={self.user.id!r})"

    def second_factor_step(self, code: str, unix_seconds: int) -> int | None:
        """The accepted time step, or None; users without TOTP pass with step None."""
        if self.totp_secret is None:
            return None
        return totp.match_step(
            totp.decode_secret(self.totp_secret), code, unix_seconds, after_step=self.totp_last_step
        )


async def credentials(conn: AsyncConnection, email: str) -> Credentials | None:
    row = (await conn.execute(select(users).where(users.c.email == email))).first()
    if row is None:
        return None
    return Credentials(User.from_row(row), row.password_hash, row.totp_secret, row.totp_last_step)


async def _failures(
    conn: AsyncConnection, column: str, value: str, since: datetime
) -> list[datetime]:
    col = signin_failures.c[column]
    rows = await conn.execute(
        select(signin_failures.c.at).where(col == value, signin_failures.c.at > since)
    )
    return [r.at for r in rows]


async def retry_after(
    conn: AsyncConnection, *, account: str, address: str, now: datetime, policy: ThrottlePolicy
) -> int | None:
    """Seconds until a sign-in may be tried again, or None if it may be tried now."""
    since = now - policy.window
    waits = []
    for column, value, limit in (
        ("account", account, policy.per_account),
        ("address", address, policy.per_address),
    ):
        times = sorted(await _failures(conn, column, value, since))
        if len(times) >= limit:
            # Free again when the oldest failure that keeps the count at the limit ages out.
            waits.append((times[-limit] + policy.window - now).total_seconds())
    return max(1, math.ceil(max(waits))) if waits else None


async def record_failure(
    conn: AsyncConnection,
    *,
    account: str,
    address: str,
    user_id: str | None,
    now: datetime,
    policy: ThrottlePolicy,
) -> Outcome[None]:
    last_logged = await conn.scalar(
        select(func.max(signin_failures.c.at)).where(
            signin_failures.c.account == account, signin_failures.c.logged == 1
        )
    )
    log_it = last_logged is None or now - last_logged >= policy.log_every
    # Failures older than the window count for nothing any more: drop them as we go.
    since = now - policy.window
    await conn.execute(delete(signin_failures).where(
        signin_failures.c.account == account, signin_failures.c.at <= since))
    await conn.execute(delete(signin_failures).where(
        signin_failures.c.address == address[:64], signin_failures.c.at <= since))
    await conn.execute(
        insert(signin_failures).values(
            account=account, address=address[:64], at=now, logged=1 if log_it else 0
        )
    )
    if not log_it:
        return Outcome(None)
    recent = len(await _failures(conn, "account", account, now - policy.window))
    attrs: dict[str, str | int] = {"address": address, "recent_failures": recent}
    if user_id is not None:
        attrs["user_id"] = user_id
    return Outcome(None, (Event("user.signin_failed", attrs),))


async def record_success(
    conn: AsyncConnection,
    user: User,
    *,
    totp_step: int | None,
    address: str,
    now: datetime,
    lifetime: timedelta,
) -> Outcome[NewSession]:
    values: dict[str, object] = {"last_signin_at": now}
    if totp_step is not None:
        values["totp_last_step"] = totp_step
    await conn.execute(update(users).where(users.c.id == user.id).values(**values))
    # A right password clears the account's count (the address's count stays).
    await conn.execute(delete(signin_failures).where(signin_failures.c.account == user.email))
    await forget_dead_sessions(conn, user.id, now=now)
    session = await create_session(conn, user.id, address=address, now=now, lifetime=lifetime)
    attrs: dict[str, str | int] = {
        "user_id": user.id, "role": user.role.value, "actor": user.actor, "address": address,
    }
    if user.tenant_id:
        attrs["tenant_id"] = user.tenant_id
    return Outcome(session, (Event("user.signed_in", attrs),))
