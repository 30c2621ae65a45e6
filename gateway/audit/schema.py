"""SQL tables of the audit log (the regulator owns its registry and the derived indexes)."""

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

# The regulator owns these; re-exported for the modules that still import them from here.
from gateway.regulator.schema import address_intervals as address_intervals
from gateway.regulator.schema import egress_intervals as egress_intervals
from gateway.regulator.schema import endpoint_intervals as endpoint_intervals
from gateway.regulator.schema import regulator_keys as regulator_keys
from gateway.regulator.schema import regulator_nonces as regulator_nonces
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
    # INTEGER on SQLite: the key is the rowid itself, no second b-tree to write per leaf.
    Column("idx", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
           autoincrement=False),
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
    sqlite_with_rowid=False,  # SQLite: one b-tree in (level, idx) order, no rowid beside it
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
