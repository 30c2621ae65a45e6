"""Single-use, short-lived config download links; only a hash of the token is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning.errors import LinkUnavailable, PeerNotActive
from provisioning.peers import get_peer
from provisioning.schema import config_links, peers

TOKEN_BYTES = 24  # 192 bits


@dataclass(frozen=True)
class ConfigLink:
    token: str
    peer_id: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"ConfigLink(peer_id={self.peer_id!r}, expires_at={self.expires_at!r})"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def create_link(
    conn: AsyncConnection, tenant_id: str, peer_id: str, *, ttl: timedelta, now: datetime
) -> ConfigLink:
    peer = await get_peer(conn, tenant_id, peer_id)
    if peer.status != "active":
        raise PeerNotActive(f"peer {peer_id} is {peer.status}; links are only for active peers")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    await conn.execute(
        insert(config_links).values(
            token_hash=_hash(token), peer_id=peer_id, created_at=now, expires_at=now + ttl
        )
    )
    return ConfigLink(token, peer_id, now + ttl)


async def redeem_link(conn: AsyncConnection, token: str, *, now: datetime) -> tuple[str, str]:
    """Mark the link used and return (tenant_id, peer_id); any second use is refused."""
    unavailable = LinkUnavailable(
        "this link is unknown, already used or expired; ask for a new link"
    )
    if not 16 <= len(token) <= 128:
        raise unavailable
    token_hash = _hash(token)
    # Conditional UPDATE: of two concurrent redemptions exactly one changes the row.
    claimed = await conn.execute(
        update(config_links)
        .where(
            config_links.c.token_hash == token_hash,
            config_links.c.used_at.is_(None),
            config_links.c.expires_at > now,
        )
        .values(used_at=now)
    )
    if claimed.rowcount != 1:
        raise unavailable
    row = (
        await conn.execute(
            select(peers.c.tenant_id, peers.c.id, peers.c.status)
            .join(config_links, config_links.c.peer_id == peers.c.id)
            .where(config_links.c.token_hash == token_hash)
        )
    ).one()
    if row.status != "active":
        raise unavailable
    return row.tenant_id, row.id
