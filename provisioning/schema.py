"""SQL tables of the provisioning domain (SQLAlchemy Core), shared metadata for migrations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both engines (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - aiosqlite already parses
            value = datetime.fromisoformat(value)
        parsed: datetime = value
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


tenants = Table(
    "tenants",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("legal_name", String(200), nullable=False),
    Column("registration_number", String(64), nullable=False),
    Column("tax_id", String(64), nullable=False),
    Column("country", String(2), nullable=False),
    Column("contact_email", String(254), nullable=False),
    Column("max_peers", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Where the tenant's new peers go when a request names no gateway (set by ops).
    Column("default_gateway_id", String(64), nullable=True),
    # Its peers with status 'active', changed in the transaction that changes them: the
    # quota check reads this instead of counting the tenant's peers.
    Column("active_peers", Integer, nullable=False, server_default="0"),
    UniqueConstraint("country", "registration_number"),
)

tenant_transitions = Table(
    "tenant_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False, index=True),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("evidence_reference", String(200), nullable=True),
    Column("reason", String(500), nullable=True),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=True, index=True),
    Column("secret_hash", String(64), nullable=False),
    Column("label", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_by", String(64), nullable=True),
    # Agent tokens only: the one gateway whose state the token reads and reports.
    Column("gateway_id", String(64), nullable=True),
)

peers = Table(
    "peers",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("public_key", String(44), nullable=False, unique=True),
    # Needed to configure the interface; never logged, never returned after creation.
    Column("preshared_key", String(44), nullable=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("key_rotated_at", UTCDateTime, nullable=True),
    # The gateway carrying the peer (NULL before gateways existed: the default gateway).
    Column("gateway_id", String(64), nullable=True),
    # Its gateway's revision when the peer's desired state last changed (agent deltas).
    Column("revision", BigInteger, nullable=True),
    Index("ix_peers_tenant_status", "tenant_id", "status"),
    Index("ix_peers_gateway_revision", "gateway_id", "revision"),
    Index("ix_peers_tenant_id", "tenant_id", "id"),
    Index("ix_peers_status_expires", "status", "expires_at"),
)

# Every public key ever used on this gateway; the primary key makes reuse impossible,
# so a key in the audit log always names exactly one peer.
public_keys = Table(
    "public_keys",
    metadata,
    Column("public_key", String(44), primary_key=True),
    Column("peer_id", String(36), ForeignKey("peers.id"), nullable=False, index=True),
    Column("added_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
)

address_pools = Table(
    "address_pools",
    metadata,
    Column("cidr", String(64), primary_key=True),
    # Next never-used offset; only after it reaches the end are released
    # addresses recycled (oldest release first, after the quarantine).
    Column("next_offset", BigInteger, nullable=False),
)

addresses = Table(
    "addresses",
    metadata,
    Column("pool", String(64), ForeignKey("address_pools.cidr"), primary_key=True),
    Column("offset", BigInteger, primary_key=True),
    Column("address", String(64), nullable=False, unique=True),
    Column("peer_id", String(36), ForeignKey("peers.id"), nullable=True, index=True),
    Column("released_at", UTCDateTime, nullable=True),
    Index(
        "ix_addresses_free",
        "pool",
        "released_at",
        sqlite_where=text("peer_id IS NULL"),
        postgresql_where=text("peer_id IS NULL"),
    ),
)

config_links = Table(
    "config_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("peer_id", String(36), ForeignKey("peers.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
    # nonce || AES-256-GCM of a config holding a server-generated key, under the token.
    Column("sealed_config", LargeBinary, nullable=True),
)

# Latest observed WireGuard state per peer, written by the collector for the API.
peer_status = Table(
    "peer_status",
    metadata,
    Column("peer_id", String(36), ForeignKey("peers.id"), primary_key=True),
    Column("latest_handshake", UTCDateTime, nullable=True),
    Column("endpoint", String(64), nullable=True),
    Column("rx_bytes", BigInteger, nullable=False, server_default="0"),
    Column("tx_bytes", BigInteger, nullable=False, server_default="0"),
    Column("connected", Integer, nullable=False, server_default="0"),
    Column("observed_at", UTCDateTime, nullable=False),
)

# The egress mapping last logged for each gateway (its `egress.configured` fields, as JSON).
egress_configs = Table(
    "egress_configs",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("fields", Text, nullable=False),
    Column("configured_at", UTCDateTime, nullable=False),
)

# WireGuard hosts. The default gateway (settings' network.gateway_id) is kept in line with
# the settings at every start; others are registered by ops and run `vpngw agent`.
gateways = Table(
    "gateways",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("endpoint", String(255), nullable=False),
    Column("pools", Text, nullable=False),  # JSON list of CIDRs
    Column("egress", Text, nullable=True),  # JSON of the egress settings given at registration
    Column("status", String(16), nullable=False),
    # Bumped in every transaction that changes the desired state of one of its peers.
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Column("public_key", String(44), nullable=True),  # reported by the agent
    Column("listen_port", Integer, nullable=True),
    Column("interface_ok", Integer, nullable=True),
    Column("interface_detail", String(500), nullable=True),
    Column("last_contact_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("retired_at", UTCDateTime, nullable=True),
)

# Observation batches already written to the outbox, so a retried upload is a no-op.
agent_batches = Table(
    "agent_batches",
    metadata,
    Column("gateway_id", String(64), primary_key=True),
    Column("batch_id", String(64), primary_key=True),
    Column("events", Integer, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)
