"""Account rules on the real databases: invitations, sign-in, throttling, session revocation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gateway.accounts import Accounts
from gateway.audit.schema import outbox
from gateway.commands import Commands
from gateway.db import Database
from gateway.settings import Settings
from provisioning.accounts import totp
from provisioning.accounts.errors import (
    DuplicateUser,
    InvitationUnavailable,
    SigninFailed,
    SigninThrottled,
)
from provisioning.accounts.passwords import Passwords
from provisioning.accounts.schema import signin_failures
from provisioning.accounts.signin import ThrottlePolicy
from provisioning.accounts.users import UserRole, UserStatus
from provisioning.errors import IllegalTransition, InvalidInput
from provisioning.tenants import NewTenant
from tests.conftest import FakeClock
from tests.helpers import opened

PASSWORD = "correct horse battery"
CHEAP = Passwords(time_cost=1, memory_kib=8192, parallelism=1)


@pytest.fixture
async def env(
    make_settings: Callable[..., Settings], database_url: str, clock: FakeClock
) -> AsyncIterator[tuple[Accounts, Commands, Database]]:
    settings = make_settings(database_url)
    db = Database(settings.database_url)
    await db.migrate()
    commands = Commands(db=db, clock=clock, settings=settings)
    await commands.ensure_pools()
    accounts = Accounts(
        db=db, clock=clock, passwords=CHEAP,
        throttle=ThrottlePolicy(per_account=3, per_address=5, window=timedelta(minutes=15)),
    )
    yield accounts, commands, db
    await db.dispose()


async def _events(db: Database, kind: str) -> list[dict[str, Any]]:
    async with db.read() as conn:
        rows = (await conn.execute(select(outbox))).all()
    docs = [opened(db, r) for r in rows]
    return [d for d in docs if d.get("type") == kind]


async def _tenant(commands: Commands, *, verified: bool = True) -> str:
    new = NewTenant("Acme Bank Ltd", "RC-1", "NTN-1", "PK", "it@acme.example", 10)
    tenant = await commands.create_tenant(new, actor="test")
    if verified:
        await commands.verify_tenant(tenant.id, evidence_reference="KYC-1", actor="test")
    return tenant.id


def _code(secret: str, clock: FakeClock) -> str:
    return totp.totp(totp.decode_secret(secret), int(clock.now().timestamp()))


async def _tenant_admin(accounts: Accounts, tenant_id: str, email: str = "it@acme.example") -> None:
    invitation = await accounts.invite(
        email=email, role=UserRole.TENANT, tenant_id=tenant_id, actor="test"
    )
    await accounts.accept_invitation(invitation.token, password=PASSWORD, totp_secret=None,
                                     totp_code="")


async def test_invitation_works_once_and_activates_the_user(env: Any, clock: FakeClock) -> None:
    accounts, commands, db = env
    tenant_id = await _tenant(commands)
    invitation = await accounts.invite(
        email="IT@Acme.example", role=UserRole.TENANT, tenant_id=tenant_id, actor="token:abc"
    )
    assert invitation.user.email == "it@acme.example"
    assert invitation.user.status is UserStatus.INVITED
    user = await accounts.accept_invitation(
        invitation.token, password=PASSWORD, totp_secret=None, totp_code=""
    )
    assert user.status is UserStatus.ACTIVE and not user.has_totp
    with pytest.raises(InvitationUnavailable):
        await accounts.accept_invitation(
            invitation.token, password=PASSWORD, totp_secret=None, totp_code=""
        )
    with pytest.raises(InvitationUnavailable):
        await accounts.open_invitation(invitation.token)
    (invited,) = await _events(db, "user.invited")
    assert invited["actor"] == "token:abc" and invited["tenant_id"] == tenant_id
    (activated,) = await _events(db, "user.activated")
    assert activated["actor"] == f"user:{user.id}"
    with pytest.raises(DuplicateUser):
        await accounts.invite(email="it@acme.example", role=UserRole.TENANT, tenant_id=tenant_id,
                              actor="test")


async def test_an_expired_invitation_is_refused(env: Any, clock: FakeClock) -> None:
    accounts, _commands, _db = env
    invitation = await accounts.invite(email="ops@example.com", role=UserRole.OPS,
                                       tenant_id=None, actor="cli:root")
    clock.advance(days=3, seconds=1)
    with pytest.raises(InvitationUnavailable):
        await accounts.open_invitation(invitation.token)
    # Inviting again gives a fresh link; the old one stays dead.
    again = await accounts.invite(email="ops@example.com", role=UserRole.OPS, tenant_id=None,
                                  actor="cli:root")
    assert again.user.id == invitation.user.id
    assert (await accounts.open_invitation(again.token)).email == "ops@example.com"


async def test_ops_users_must_set_up_totp_and_sign_in_with_it(env: Any, clock: FakeClock) -> None:
    accounts, _commands, db = env
    invitation = await accounts.invite(email="ops@example.com", role=UserRole.OPS,
                                       tenant_id=None, actor="cli:root")
    with pytest.raises(InvalidInput) as refused:
        await accounts.accept_invitation(invitation.token, password=PASSWORD, totp_secret=None,
                                         totp_code="")
    assert refused.value.field == "totp_secret"
    secret = totp.new_secret()
    with pytest.raises(InvalidInput) as wrong:
        await accounts.accept_invitation(invitation.token, password=PASSWORD, totp_secret=secret,
                                         totp_code="000000" if _code(secret, clock) != "000000"
                                         else "111111")
    assert wrong.value.field == "totp_code"
    with pytest.raises(InvalidInput) as short:
        await accounts.accept_invitation(invitation.token, password="short", totp_secret=secret,
                                         totp_code=_code(secret, clock))
    assert short.value.field == "password"
    user = await accounts.accept_invitation(
        invitation.token, password=PASSWORD, totp_secret=secret, totp_code=_code(secret, clock)
    )
    assert user.has_totp
    # The enrolment code cannot be used again to sign in; the next step's code can.
    with pytest.raises(SigninFailed):
        await accounts.sign_in(email="ops@example.com", password=PASSWORD,
                               code=_code(secret, clock), address="203.0.113.9")
    clock.advance(seconds=30)
    with pytest.raises(SigninFailed):
        await accounts.sign_in(email="ops@example.com", password=PASSWORD, code="",
                               address="203.0.113.9")
    signed = await accounts.sign_in(email="ops@example.com", password=PASSWORD,
                                    code=_code(secret, clock), address="203.0.113.9")
    who = await accounts.resolve(signed.session.token)
    assert who is not None and who.user.id == user.id and who.csrf_token
    (event,) = await _events(db, "user.signed_in")
    assert event["actor"] == f"user:{user.id}" and event["address"] == "203.0.113.9"


async def test_sign_in_is_throttled_per_account_and_failures_are_logged_sparsely(
    env: Any, clock: FakeClock
) -> None:
    accounts, commands, db = env
    await _tenant_admin(accounts, await _tenant(commands))
    for _ in range(3):
        with pytest.raises(SigninFailed):
            await accounts.sign_in(email="it@acme.example", password="wrong password!",
                                   code="", address="198.51.100.1")
    # The limit is reached: even the right password is refused until the window passes.
    with pytest.raises(SigninThrottled) as throttled:
        await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                               address="198.51.100.2")
    assert 0 < throttled.value.retry_after <= 15 * 60
    assert len(await _events(db, "user.signin_failed")) == 1
    clock.advance(minutes=15, seconds=1)
    signed = await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                                    address="198.51.100.2")
    assert await accounts.resolve(signed.session.token) is not None


async def test_sign_in_is_throttled_per_address(env: Any, clock: FakeClock) -> None:
    accounts, commands, db = env
    await _tenant_admin(accounts, await _tenant(commands))
    for n in range(5):
        with pytest.raises(SigninFailed):
            await accounts.sign_in(email=f"guess{n}@acme.example", password="nope nope nope",
                                   code="", address="198.51.100.7")
    with pytest.raises(SigninThrottled):
        await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                               address="198.51.100.7")
    # Another address is not affected.
    await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                           address="198.51.100.8")
    # Failures older than the window are dropped as new ones come in.
    clock.advance(minutes=16)
    with pytest.raises(SigninFailed):
        await accounts.sign_in(email="guess@acme.example", password="nope nope nope",
                               code="", address="198.51.100.7")
    async with db.read() as conn:
        kept = (await conn.execute(select(signin_failures.c.address))).all()
    assert [r.address for r in kept] == ["198.51.100.7"]


async def test_disabling_a_user_ends_their_sessions_at_once(env: Any, clock: FakeClock) -> None:
    accounts, commands, db = env
    await _tenant_admin(accounts, await _tenant(commands))
    signed = await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                                    address="198.51.100.1")
    assert await accounts.resolve(signed.session.token) is not None
    await accounts.disable(signed.user.id, actor="user:ops-1")
    assert await accounts.resolve(signed.session.token) is None
    with pytest.raises(SigninFailed):
        await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                               address="198.51.100.1")
    (event,) = await _events(db, "user.disabled")
    assert event["actor"] == "user:ops-1"
    with pytest.raises(IllegalTransition):
        await accounts.disable(signed.user.id, actor=f"user:{signed.user.id}")


async def test_tenant_suspension_ends_its_users_sessions(env: Any, clock: FakeClock) -> None:
    accounts, commands, _db = env
    tenant_id = await _tenant(commands)
    await _tenant_admin(accounts, tenant_id)
    signed = await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                                    address="198.51.100.1")
    clock.advance(seconds=1)
    await commands.suspend_tenant(tenant_id, reason="unpaid invoice", actor="test")
    assert await accounts.resolve(signed.session.token) is None
    # Signing in again works (to read why), and that new session lives.
    clock.advance(seconds=1)
    again = await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                                   address="198.51.100.1")
    assert await accounts.resolve(again.session.token) is not None
    await accounts.sign_out(again.session.token)
    assert await accounts.resolve(again.session.token) is None


async def test_sessions_expire(env: Any, clock: FakeClock) -> None:
    accounts, commands, _db = env
    await _tenant_admin(accounts, await _tenant(commands))
    signed = await accounts.sign_in(email="it@acme.example", password=PASSWORD, code="",
                                    address="198.51.100.1")
    clock.advance(hours=8, seconds=1)
    assert await accounts.resolve(signed.session.token) is None


async def test_invitation_rules(env: Any) -> None:
    accounts, commands, _db = env
    with pytest.raises(InvalidInput) as no_tenant:
        await accounts.invite(email="a@acme.example", role=UserRole.TENANT, tenant_id=None,
                              actor="test")
    assert no_tenant.value.field == "tenant_id"
    tenant_id = await _tenant(commands, verified=False)
    with pytest.raises(InvalidInput) as ops_with_tenant:
        await accounts.invite(email="a@acme.example", role=UserRole.OPS, tenant_id=tenant_id,
                              actor="test")
    assert ops_with_tenant.value.field == "tenant_id"
    with pytest.raises(InvalidInput) as bad_email:
        await accounts.invite(email="not an address", role=UserRole.OPS, tenant_id=None,
                              actor="test")
    assert bad_email.value.field == "email"
    await commands.terminate_tenant(tenant_id, reason="declined", actor="test")
    with pytest.raises(IllegalTransition):
        await accounts.invite(email="a@acme.example", role=UserRole.TENANT, tenant_id=tenant_id,
                              actor="test")
