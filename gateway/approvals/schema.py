"""Tables of two-person control: approvals, and the sensitive settings in force."""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from provisioning.schema import UTCDateTime, metadata

# One row per requested sensitive operation. `payload` is the JSON the operation needs at
# grant time (never a secret: an ops token's hash, not the token).
approvals = Table(
    "approvals",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("requested_by", String(64), nullable=False),
    Column("requested_person", String(64), nullable=False),
    Column("requested_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("decided_by", String(64), nullable=True),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("reason", String(500), nullable=True),
    Index("ix_approvals_status_expires", "status", "expires_at"),
)

# Sensitive settings read from gateway.toml at start (retention, whether approvals are
# required): the value in force, so a changed file is noticed and, while approvals are
# required, held until a second principal approves it.
settings_in_force = Table(
    "settings_in_force",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("changed_by", String(64), nullable=False),
)
