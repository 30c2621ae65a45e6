"""SQL tables of the regulator: its keys, the replay store for request nonces, and the
interval indexes derived from the log that attribution queries read instead of the log."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from provisioning.schema import UTCDateTime, metadata

regulator_keys = Table(
    "regulator_keys",
    metadata,
    Column("keyid", String(128), primary_key=True),
    Column("public_key", String(44), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("revoked_by", String(64), nullable=True),
)

# Seen request nonces, kept until the signature they came with expires.
regulator_nonces = Table(
    "regulator_nonces",
    metadata,
    Column("keyid", String(128), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
)

# Tunnel address held by a peer from one log entry to another (attribution by tunnel IP).
address_intervals = Table(
    "address_intervals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(64), nullable=False),
    Column("peer_id", String(36), nullable=False),
    Column("tenant_id", String(36), nullable=False),
    Column("start_ts", UTCDateTime, nullable=False),
    Column("start_idx", BigInteger, nullable=False),
    Column("end_ts", UTCDateTime, nullable=True),
    Column("end_idx", BigInteger, nullable=True),
    Index("ix_address_intervals_address_start", "address", "start_ts"),
    Index("ix_address_intervals_peer", "peer_id"),
)

# A peer connected from one public endpoint (attribution by public address).
endpoint_intervals = Table(
    "endpoint_intervals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("endpoint_ip", String(64), nullable=False),
    Column("endpoint_port", Integer, nullable=False),
    Column("peer_id", String(36), nullable=False),
    Column("tenant_id", String(36), nullable=True),
    Column("start_ts", UTCDateTime, nullable=False),
    Column("start_idx", BigInteger, nullable=False),
    Column("end_ts", UTCDateTime, nullable=True),
    Column("end_idx", BigInteger, nullable=True),
    Index("ix_endpoint_intervals_ip_start", "endpoint_ip", "start_ts"),
    Index("ix_endpoint_intervals_peer", "peer_id"),
)

# An egress mapping in force for a gateway (attribution by public address and port).
egress_intervals = Table(
    "egress_intervals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("gateway_id", String(64), nullable=False),
    Column("fields", Text, nullable=False),
    Column("start_ts", UTCDateTime, nullable=False),
    Column("start_idx", BigInteger, nullable=False),
    Column("end_ts", UTCDateTime, nullable=True),
    Column("end_idx", BigInteger, nullable=True),
    Index("ix_egress_intervals_start", "start_ts"),
)
