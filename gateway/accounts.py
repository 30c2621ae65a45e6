"""Account use-cases with their transaction and audit events; shared by the web pages and CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit.outbox import append_events
from gateway.clock import Clock
from gateway.db import Database
from provisioning.accounts import sessions, signin, totp, users
from provisioning.accounts.errors import SigninFailed, SigninThrottled
from provisioning.accounts.passwords import Passwords, check_new_password
from provisioning.accounts.sessions import NewSession, SignedInUser
from provisioning.accounts.signin import ThrottlePolicy
from provisioning.accounts.users import Activation, Invitation, User, UserRole, UserStatus
from provisioning.errors import InvalidInput
from provisioning.events import Outcome
from provisioning.tenants import TenantStatus, get_tenant

T = TypeVar("T")


@dataclass(frozen=True)
class SignedIn:
    user: User
    session: NewSession


class Accounts:
    """Invitations, activation, sign-in and sessions, each committed with its events."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        passwords: Passwords,
        on_commit: Callable[[], None] = lambda: None,
        throttle: ThrottlePolicy | None = None,
        session_lifetime: timedelta = timedelta(hours=8),
        invitation_ttl: timedelta = timedelta(days=3),
    ) -> None:
        self.db = db
        self.clock = clock
        self.passwords = passwords
        self.throttle = throttle or ThrottlePolicy()
        self.session_lifetime = session_lifetime
        self.invitation_ttl = invitation_ttl
        self._on_commit = on_commit

    async def _run(self, step: Callable[[AsyncConnection], Awaitable[Outcome[T]]]) -> T:
        async with self.db.write() as conn:
            outcome = await step(conn)
            await append_events(conn, list(outcome.events), now=self.clock.now())
        if outcome.events:
            self._on_commit()
        return outcome.value

    # --- invitations --------------------------------------------------------------

    async def invite(
        self, *, email: str, role: UserRole, tenant_id: str | None, actor: str
    ) -> Invitation:
        address = users.normalise_email(email)
        return await self._run(
            lambda c: users.invite_user(
                c,
                email=address,
                role=role,
                tenant_id=tenant_id,
                actor=actor,
                now=self.clock.now(),
                ttl=self.invitation_ttl,
            )
        )

    async def open_invitation(self, token: str) -> User:
        async with self.db.read() as conn:
            return await users.open_invitation(conn, token, now=self.clock.now())

    async def accept_invitation(
        self, token: str, *, password: str, totp_secret: str | None, totp_code: str
    ) -> User:
        """Set the password (and second factor, proven by a first code) and activate."""
        invited = await self.open_invitation(token)
        check_new_password("password", password)
        step = None
        # The form always carries a fresh secret; a tenant admin who types no code skips TOTP.
        if totp_code.strip() or invited.role is UserRole.OPS:
            if not totp_secret:
                raise InvalidInput("totp_secret", "reload the page to get a second-factor secret")
            try:
                key = totp.decode_secret(totp_secret)
            except totp.InvalidSecret as exc:
                raise InvalidInput("totp_secret", str(exc)) from exc
            step = totp.match_step(key, totp_code.strip(), int(self.clock.now().timestamp()))
            if step is None:
                raise InvalidInput(
                    "totp_code",
                    "the code does not match; add the key to your authenticator app and "
                    "type the 6 digits it shows now",
                )
        password_hash = await asyncio.to_thread(self.passwords.hash, password)
        activation = Activation(password_hash, totp_secret if step is not None else None, step)
        return await self._run(
            lambda c: users.accept_invitation(c, token, activation, now=self.clock.now())
        )

    # --- sign-in and sessions -----------------------------------------------------

    async def sign_in(self, *, email: str, password: str, code: str, address: str) -> SignedIn:
        account = email.strip().lower()[:254]
        refused = SigninFailed(
            "the e-mail, password or second-factor code is wrong; check them and try again"
        )
        now = self.clock.now()
        async with self.db.read() as conn:
            wait = await signin.retry_after(
                conn, account=account, address=address, now=now, policy=self.throttle
            )
            found = await signin.credentials(conn, account)
        if wait is not None:
            raise SigninThrottled(
                f"too many failed sign-ins; try again in {wait} seconds", retry_after=wait
            )
        password_ok = await asyncio.to_thread(
            self.passwords.verify, found.password_hash if found else None, password
        )
        step = None
        ok = found is not None and password_ok
        if found is not None and ok and found.totp_secret is not None:
            step = found.second_factor_step(code.strip(), int(now.timestamp()))
            ok = step is not None
        if not ok or found is None:
            user_id = found.user.id if found else None
            await self._run(
                lambda c: signin.record_failure(
                    c,
                    account=account,
                    address=address,
                    user_id=user_id,
                    now=self.clock.now(),
                    policy=self.throttle,
                )
            )
            raise refused
        user = found.user
        if user.status is not UserStatus.ACTIVE:
            raise SigninFailed(f"this account is {user.status.value}; ask your provider")
        if user.tenant_id is not None:
            async with self.db.read() as conn:
                tenant = await get_tenant(conn, user.tenant_id)
            if tenant.status is TenantStatus.TERMINATED:
                raise SigninFailed("your company's service has ended; contact your provider")
        session = await self._run(
            lambda c: signin.record_success(
                c,
                user,
                totp_step=step,
                address=address,
                now=self.clock.now(),
                lifetime=self.session_lifetime,
            )
        )
        return SignedIn(user, session)

    async def resolve(self, token: str) -> SignedInUser | None:
        async with self.db.read() as conn:
            return await sessions.resolve_session(conn, token, now=self.clock.now())

    async def sign_out(self, token: str) -> None:
        async with self.db.write() as conn:
            await sessions.end_session(conn, token, now=self.clock.now())

    # --- administration -----------------------------------------------------------

    async def disable(self, user_id: str, *, actor: str) -> User:
        return await self._run(
            lambda c: users.disable_user(c, user_id, actor=actor, now=self.clock.now())
        )

    async def list_users(self, *, tenant_id: str | None = None) -> list[User]:
        async with self.db.read() as conn:
            return await users.list_users(conn, tenant_id=tenant_id)

