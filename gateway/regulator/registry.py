"""Regulator keys registered by ops (and restated before retention), and the replay store
for request nonces."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.audit import storage
from gateway.audit.canonical import format_time
from gateway.audit.reaffirm import REASON, REGULATOR_KEY_REAFFIRMED
from gateway.audit.schema import log_entries
from gateway.crypto import ed25519_checks
from gateway.regulator.schema import regulator_keys, regulator_nonces
from provisioning import validation
from provisioning.errors import DomainError, InvalidInput, NotFound
from provisioning.events import Event, Outcome
from provisioning.validation import IdFormat


class DuplicateKeyId(DomainError):
    status = 409
    code = "duplicate-keyid"
    title = "Key id already registered"


@dataclass(frozen=True)
class RegulatorKey:
    keyid: str
    public_key: str
    label: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None

    def ed25519(self) -> Ed25519PublicKey:
        return _ed25519(self.public_key)


@lru_cache(maxsize=1024)
def _ed25519(public_key: str) -> Ed25519PublicKey:
    """A registered key parsed once, not on each request signed with it."""
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))


def parse_public_key(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInput(
            "public_key", "must be the base64 of the 32 raw Ed25519 public key bytes"
        )
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput("public_key", "is not valid standard base64") from exc
    if len(raw) != 32:
        raise InvalidInput("public_key", f"must decode to 32 bytes (got {len(raw)})")
    try:
        ed25519_checks.check_public_key(raw)
    except ed25519_checks.UnsafeKeyError as exc:
        raise InvalidInput(
            "public_key",
            f"is refused: {exc}, under which anyone could forge signatures; "
            "send the public key of a freshly generated pair (`vpngw-regulator keygen`)",
        ) from exc
    return base64.b64encode(raw).decode()


# Printable ASCII without quotes or backslashes (it is quoted in Signature-Input), no
# space at either end.
KEYID = IdFormat(
    "regulator key id",
    r'^[\x21\x23-\x5b\x5d-\x7e](?:[\x20\x21\x23-\x5b\x5d-\x7e]{0,126}[\x21\x23-\x5b\x5d-\x7e])?$',
    128,
    "pta-2026",
)


def parse_keyid(value: object) -> str:
    keyid = validation.reference("keyid", value, max_len=KEYID.max_len)
    if '"' in keyid or "\\" in keyid:
        raise InvalidInput("keyid", "must not contain quotes or backslashes")
    return validation.identifier("keyid", keyid, KEYID)


def _key(row: object) -> RegulatorKey:
    m = row._mapping  # type: ignore[attr-defined]
    return RegulatorKey(
        m["keyid"], m["public_key"], m["label"], m["created_at"], m["created_by"], m["revoked_at"]
    )


async def add_key(
    conn: AsyncConnection, *, keyid: str, public_key: str, label: str, actor: str, now: datetime
) -> Outcome[RegulatorKey]:
    if await conn.scalar(select(regulator_keys.c.keyid).where(regulator_keys.c.keyid == keyid)):
        raise DuplicateKeyId(
            f"key id {keyid!r} is already registered; choose another key id "
            "(a revoked key id is never reused)"
        )
    try:
        await conn.execute(
            insert(regulator_keys).values(
                keyid=keyid, public_key=public_key, label=label, created_at=now, created_by=actor
            )
        )
    except IntegrityError as exc:
        raise DuplicateKeyId(f"key id {keyid!r} is already registered") from exc
    key = RegulatorKey(keyid, public_key, label, now, actor, None)
    event = Event(
        "regulator.key_added",
        {"key_id": keyid, "public_key": public_key, "label": label, "actor": actor},
    )
    return Outcome(key, (event,))


async def revoke_key(
    conn: AsyncConnection, keyid: str, *, actor: str, now: datetime
) -> Outcome[RegulatorKey]:
    row = (
        # Locked: of concurrent revocations one records the event, the others see it done.
        await conn.execute(
            select(regulator_keys).where(regulator_keys.c.keyid == keyid).with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"no regulator key with key id {keyid!r}")
    key = _key(row)
    if key.revoked_at is not None:
        return Outcome(key)
    await conn.execute(
        update(regulator_keys)
        .where(regulator_keys.c.keyid == keyid)
        .values(revoked_at=now, revoked_by=actor)
    )
    revoked = RegulatorKey(**{**key.__dict__, "revoked_at": now})
    return Outcome(revoked, (Event("regulator.key_revoked", {"key_id": keyid, "actor": actor}),))


async def active_key(conn: AsyncConnection, keyid: str) -> RegulatorKey | None:
    row = (
        await conn.execute(
            select(regulator_keys).where(
                regulator_keys.c.keyid == keyid, regulator_keys.c.revoked_at.is_(None)
            )
        )
    ).first()
    return None if row is None else _key(row)


async def is_registered(conn: AsyncConnection, keyid: str) -> bool:
    """Whether the key id was ever registered (revoked keys included)."""
    found = await conn.scalar(
        select(regulator_keys.c.keyid).where(regulator_keys.c.keyid == keyid)
    )
    return found is not None


async def list_keys(conn: AsyncConnection) -> list[RegulatorKey]:
    rows = (await conn.execute(select(regulator_keys).order_by(regulator_keys.c.created_at))).all()
    return [_key(r) for r in rows]


async def remember_nonce(
    conn: AsyncConnection, *, keyid: str, nonce: str, expires_at: datetime, is_postgres: bool
) -> bool:
    """Record a nonce; False if this key already used it (a replay)."""
    stmt = (
        (pg_insert if is_postgres else sqlite_insert)(regulator_nonces)
        .values(keyid=keyid, nonce=nonce, expires_at=expires_at)
        .on_conflict_do_nothing()
    )
    result = await conn.execute(stmt)
    return bool(result.rowcount == 1)


async def forget_expired_nonces(conn: AsyncConnection, *, now: datetime) -> int:
    result = await conn.execute(delete(regulator_nonces).where(regulator_nonces.c.expires_at < now))
    return int(result.rowcount or 0)


async def keys_in_force(conn: AsyncConnection, before: datetime) -> list[Event]:
    """Fact provider for retention (gateway.audit.reaffirm): every regulator key not
    revoked, i.e. which public key may sign queries under a key id."""
    restated = set()
    opener = storage.Opener.of(conn)  # payloads are sealed at rest
    for leaf, leaf_hash in await conn.execute(
        select(log_entries.c.leaf, log_entries.c.leaf_hash).where(
            and_(log_entries.c.type == REGULATOR_KEY_REAFFIRMED, log_entries.c.ts >= before,
                 log_entries.c.leaf.is_not(None))
        )
    ):
        event = opener.event(leaf, leaf_hash)
        if event is not None:
            restated.add(event["key_id"])
    rows = (await conn.execute(
        select(regulator_keys).where(
            regulator_keys.c.revoked_at.is_(None), regulator_keys.c.created_at < before
        ).order_by(regulator_keys.c.keyid)
    )).all()
    return [
        Event(REGULATOR_KEY_REAFFIRMED, {
            "key_id": r.keyid, "public_key": r.public_key, "label": r.label,
            "added_at": format_time(r.created_at), "reason": REASON,
        })
        for r in rows if r.keyid not in restated
    ]
