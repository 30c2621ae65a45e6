"""SQL tables of the audit log, the regulator registry and the indexes derived from the log."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
)

from provisioning.schema import UTCDateTime, metadata

# Leaves waiting for the sequencer, written in the same transaction as the change; the
# leaf sealed as log_entries keeps it (gateway.audit.storage), with its leaf hash (NULL
# in rows written before payloads were sealed).
outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

log_entries = Table(
    "log_entries",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    # The canonical leaf sealed under its UTC day's key (or plaintext, from before sealing
    # existed: it starts with "{"). NULL once retention has erased the payload;
    # leaf_hash keeps every proof valid.
    Column("leaf", LargeBinary, nullable=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Column("type", String(40), nullable=False),
    Column("tenant_id", String(36), nullable=True),
    Column("peer_id", String(36), nullable=True),
    Column("ts", UTCDateTime, nullable=False),
    Column("redacted_at", UTCDateTime, nullable=True),
    Index("ix_log_entries_tenant_ts", "tenant_id", "ts"),
    Index("ix_log_entries_peer_ts", "peer_id", "ts"),
    Index("ix_log_entries_type_ts", "type", "ts"),
    Index("ix_log_entries_ts", "ts"),
)

# Hash of every complete aligned subtree (level >= 1); level 0 is log_entries.leaf_hash.
log_nodes = Table(
    "log_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
)

# One row; its row lock serialises sequencers that share a PostgreSQL database.
log_head = Table(
    "log_head",
    metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

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

# Collector state per peer, so a restart neither ends live sessions nor loses totals.
session_state = Table(
    "session_state",
    metadata,
    Column("public_key", String(44), primary_key=True),
    Column("state", Text, nullable=False),
)

# Cosignatures of checkpoints by the witnesses in [witness] (C2SP tlog-cosignature):
# the signature line as the witness sent it, appended when the checkpoint is served.
witness_cosignatures = Table(
    "witness_cosignatures",
    metadata,
    Column("witness", String(300), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("line", Text, nullable=False),
    Column("cosigned_at", BigInteger, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
)
