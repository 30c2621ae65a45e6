"""SQL tables of human accounts, on the shared metadata so migrations see them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table

from provisioning.schema import UTCDateTime, metadata

users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),  # stored lower-case
    Column("role", String(16), nullable=False),  # ops | tenant
    Column("tenant_id", String(36), ForeignKey("tenants.id"), nullable=True, index=True),
    Column("status", String(16), nullable=False),  # invited | active | disabled
    Column("password_hash", String(200), nullable=True),
    Column("totp_secret", String(64), nullable=True),
    # The last time step whose code was accepted: a code never works twice.
    Column("totp_last_step", BigInteger, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("activated_at", UTCDateTime, nullable=True),
    Column("last_signin_at", UTCDateTime, nullable=True),
    Column("disabled_at", UTCDateTime, nullable=True),
    Column("disabled_by", String(64), nullable=True),
)

user_invitations = Table(
    "user_invitations",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id"), nullable=False, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("used_at", UTCDateTime, nullable=True),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(36), ForeignKey("users.id"), nullable=False, index=True),
    Column("csrf_token", String(64), nullable=False),
    Column("address", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
)

signin_failures = Table(
    "signin_failures",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(254), nullable=False),
    Column("address", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    # 1 when this failure was written to the audit log (failures are logged sparsely).
    Column("logged", Integer, nullable=False, server_default="0"),
    Index("ix_signin_failures_account_at", "account", "at"),
    Index("ix_signin_failures_address_at", "address", "at"),
)
