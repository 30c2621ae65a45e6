"""Bearer tokens for ops and tenants: only a hash is stored, checks are constant-time."""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning.errors import NotFound
from provisioning.events import Event, Outcome
from provisioning.schema import tokens
from provisioning.validation import IdFormat

# vgw_<role letter>_<12 hex id>_<43 chars urlsafe secret>; the prefix lets secret
# scanners spot leaked tokens, the id finds the row without touching the secret.
_TOKEN = re.compile(r"^vgw_([ota])_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
TOKEN_ID = IdFormat("token id", "^[0-9a-f]{12}$", 12, "3f9a0c1b2d4e")


class Role(enum.StrEnum):
    OPS = "ops"
    TENANT = "tenant"
    AGENT = "agent"  # a `vpngw agent`, bound to one gateway


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token id is what audit events name as the actor."""

    token_id: str
    role: Role
    tenant_id: str | None
    gateway_id: str | None = None

    @property
    def actor(self) -> str:
        return f"token:{self.token_id}"


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    role: Role
    tenant_id: str | None
    label: str
    created_at: datetime
    secret: str

    def __repr__(self) -> str:
        return f"IssuedToken(token_id={self.token_id!r}, role={self.role!r})"


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    role: Role
    tenant_id: str | None
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def mint(role: Role) -> tuple[str, str, str]:
    """(token id, full bearer token, stored hash) for a new token."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    letter = {Role.OPS: "o", Role.TENANT: "t", Role.AGENT: "a"}[role]
    return token_id, f"vgw_{letter}_{token_id}_{secret}", _hash(secret)


async def issue_token(
    conn: AsyncConnection,
    role: Role,
    *,
    tenant_id: str | None,
    label: str,
    actor: str,
    now: datetime,
    gateway_id: str | None = None,
) -> Outcome[IssuedToken]:
    token_id, bearer, secret_hash = mint(role)
    outcome = await insert_token(
        conn, role, token_id=token_id, secret_hash=secret_hash, tenant_id=tenant_id,
        label=label, actor=actor, now=now, gateway_id=gateway_id,
    )
    issued = IssuedToken(token_id, role, tenant_id, label, now, bearer)
    return Outcome(issued, outcome.events)


async def insert_token(
    conn: AsyncConnection,
    role: Role,
    *,
    token_id: str,
    secret_hash: str,
    tenant_id: str | None,
    label: str,
    actor: str,
    now: datetime,
    gateway_id: str | None = None,
) -> Outcome[TokenInfo]:
    """Store a minted token (its hash only) with its `token.issued` event.

    Separate from minting so an ops token requested under two-person control can be
    handed to its requester at once and stored only when a second principal approves.
    """
    await conn.execute(
        insert(tokens).values(
            id=token_id,
            role=role.value,
            tenant_id=tenant_id,
            secret_hash=secret_hash,
            label=label,
            created_at=now,
            created_by=actor,
            gateway_id=gateway_id,
        )
    )
    attrs: dict[str, str | int] = {"token_id": token_id, "role": role.value, "actor": actor}
    if tenant_id:
        attrs["tenant_id"] = tenant_id
    if gateway_id:
        attrs["gateway_id"] = gateway_id
    info = TokenInfo(token_id, role, tenant_id, label, now, actor, None)
    return Outcome(info, (Event("token.issued", attrs),))


async def authenticate(conn: AsyncConnection, bearer: str) -> Principal | None:
    """The principal for a presented token, or None if it is malformed, unknown or revoked."""
    match = _TOKEN.match(bearer)
    if match is None:
        return None
    letter, token_id, secret = match.groups()
    row = (await conn.execute(select(tokens).where(tokens.c.id == token_id))).first()
    # Hash and compare even when the row is missing so timing says nothing.
    presented = _hash(secret)
    stored = row.secret_hash if row is not None else "0" * 64
    if not hmac.compare_digest(presented, stored) or row is None:
        return None
    if row.revoked_at is not None or row.role[0] != letter:
        return None
    return Principal(
        token_id=token_id, role=Role(row.role), tenant_id=row.tenant_id, gateway_id=row.gateway_id
    )


async def revoke_token(
    conn: AsyncConnection,
    token_id: str,
    *,
    actor: str,
    now: datetime,
    tenant_id: str | None = None,
) -> Outcome[TokenInfo]:
    """Revoke one token; with tenant_id given, only a token of that tenant."""
    # Locked: of concurrent revocations one records the event, the others see it done.
    query = select(tokens).where(tokens.c.id == token_id).with_for_update()
    if tenant_id is not None:
        query = query.where(tokens.c.tenant_id == tenant_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"no token with id {token_id}")
    info = _info(row)
    if row.revoked_at is not None:
        return Outcome(info)
    await conn.execute(
        update(tokens).where(tokens.c.id == token_id).values(revoked_at=now, revoked_by=actor)
    )
    attrs: dict[str, str | int] = {"token_id": token_id, "role": row.role, "actor": actor}
    if row.tenant_id:
        attrs["tenant_id"] = row.tenant_id
    return Outcome(
        TokenInfo(**{**info.__dict__, "revoked_at": now}), (Event("token.revoked", attrs),)
    )


async def revoke_tenant_tokens(
    conn: AsyncConnection, tenant_id: str, *, actor: str, now: datetime
) -> tuple[Event, ...]:
    rows = (
        await conn.execute(
            select(tokens.c.id)
            .where(tokens.c.tenant_id == tenant_id, tokens.c.revoked_at.is_(None))
            .order_by(tokens.c.id)
        )
    ).all()
    events: list[Event] = []
    for row in rows:
        events.extend((await revoke_token(conn, row.id, actor=actor, now=now)).events)
    return tuple(events)


async def revoke_gateway_tokens(
    conn: AsyncConnection, gateway_id: str, *, actor: str, now: datetime
) -> tuple[Event, ...]:
    rows = (await conn.execute(select(tokens.c.id).where(
        tokens.c.gateway_id == gateway_id, tokens.c.revoked_at.is_(None)))).all()
    events: list[Event] = []
    for row in rows:
        events.extend((await revoke_token(conn, row.id, actor=actor, now=now)).events)
    return tuple(events)


async def list_tokens(
    conn: AsyncConnection, *, tenant_id: str | None = None, gateway_id: str | None = None
) -> list[TokenInfo]:
    query = select(tokens).order_by(tokens.c.created_at, tokens.c.id)
    if tenant_id is not None:
        query = query.where(tokens.c.tenant_id == tenant_id)
    if gateway_id is not None:
        query = query.where(tokens.c.gateway_id == gateway_id)
    return [_info(r) for r in (await conn.execute(query)).all()]


def _info(row: object) -> TokenInfo:
    r = row._mapping  # type: ignore[attr-defined]
    return TokenInfo(
        r["id"],
        Role(r["role"]),
        r["tenant_id"],
        r["label"],
        r["created_at"],
        r["created_by"],
        r["revoked_at"],
    )
