"""Single-use, short-lived config download links; only a hash of the token is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from provisioning.errors import LinkUnavailable, NotFound, PeerNotActive
from provisioning.peers import get_peer
from provisioning.schema import config_links, peers
from provisioning.sealing import SealError, seal, unseal
from provisioning.tenants import get_tenant, require_verified
from provisioning.validation import IdFormat

TOKEN_BYTES = 24  # 192 bits
# secrets.token_urlsafe(24) gives 32 characters; older or longer tokens still fit.
LINK_TOKEN_FORMAT = IdFormat("link token", "^[A-Za-z0-9_-]{16,128}$", 128, "q3Zk" * 8)


@dataclass(frozen=True)
class ConfigLink:
    token: str
    peer_id: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"ConfigLink(peer_id={self.peer_id!r}, expires_at={self.expires_at!r})"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Redeemed:
    """What a link gives: the peer, and its sealed config when the link carried one."""

    tenant_id: str
    peer_id: str
    sealed_config: str | None = None


async def create_link(
    conn: AsyncConnection,
    tenant_id: str,
    peer_id: str,
    *,
    ttl: timedelta,
    now: datetime,
    config_to_seal: str | None = None,
) -> ConfigLink:
    """A single-use link; with `config_to_seal` (a config holding a server-generated
    private key) the config is stored encrypted under the link's token, and only there."""
    require_verified(await get_tenant(conn, tenant_id), refused="config links")
    peer = await get_peer(conn, tenant_id, peer_id)
    if peer.status != "active":
        raise PeerNotActive(f"peer {peer_id} is {peer.status}; links are only for active peers")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    sealed = None if config_to_seal is None else seal(config_to_seal, token=token, peer_id=peer_id)
    await conn.execute(
        insert(config_links).values(
            token_hash=_hash(token),
            peer_id=peer_id,
            created_at=now,
            expires_at=now + ttl,
            sealed_config=sealed,
        )
    )
    return ConfigLink(token, peer_id, now + ttl)


async def redeem_link(conn: AsyncConnection, token: str, *, now: datetime) -> Redeemed:
    """Mark the link used (and drop its sealed config); any second use is refused."""
    unavailable = LinkUnavailable("this link was already used or has expired; ask for a new link")
    unknown = NotFound("this link is unknown; check the address or ask for a new link")
    if not LINK_TOKEN_FORMAT.matches(token):
        raise unknown
    token_hash = _hash(token)
    sealed = await conn.scalar(
        select(config_links.c.sealed_config).where(config_links.c.token_hash == token_hash)
    )
    # Conditional UPDATE: of two concurrent redemptions exactly one changes the row.
    claimed = await conn.execute(
        update(config_links)
        .where(
            config_links.c.token_hash == token_hash,
            config_links.c.used_at.is_(None),
            config_links.c.expires_at > now,
        )
        # The sealed config goes with the first use: a copy of the key never lingers.
        .values(used_at=now, sealed_config=None)
    )
    if claimed.rowcount != 1:
        known = await conn.scalar(
            select(config_links.c.peer_id).where(config_links.c.token_hash == token_hash)
        )
        raise unavailable if known is not None else unknown
    row = (
        await conn.execute(
            select(peers.c.tenant_id, peers.c.id, peers.c.status)
            .join(config_links, config_links.c.peer_id == peers.c.id)
            .where(config_links.c.token_hash == token_hash)
        )
    ).one()
    if row.status != "active":
        raise unavailable
    # Raising rolls the claim back: the link works again once the tenant is reinstated.
    require_verified(await get_tenant(conn, row.tenant_id), refused="config links")
    if sealed is None:
        return Redeemed(row.tenant_id, row.id)
    try:
        return Redeemed(row.tenant_id, row.id, unseal(bytes(sealed), token=token, peer_id=row.id))
    except SealError as exc:  # altered in storage: say so rather than serve garbage
        raise LinkUnavailable("this link's config cannot be opened; ask for a new link") from exc


async def drop_expired_seals(conn: AsyncConnection, *, now: datetime) -> int:
    """Erase sealed configs of links that expired unused: their keys are never served."""
    done = await conn.execute(
        update(config_links)
        .where(config_links.c.sealed_config.is_not(None), config_links.c.expires_at <= now)
        .values(sealed_config=None)
    )
    return int(done.rowcount or 0)
