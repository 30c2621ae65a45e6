"""SQLite: the log's tables keyed by their own b-tree, without a second one for the key.

``log_entries.idx`` was a BIGINT primary key, which SQLite keeps as a separate unique
index beside the table's rowid b-tree: every appended leaf wrote both. Declared INTEGER
it is the rowid itself. ``log_nodes`` is keyed by (level, idx) and now stored WITHOUT
ROWID, as one b-tree in key order. Both tables are rebuilt with every row copied (in one
transaction: a failure leaves the old tables). PostgreSQL keeps its tables: a BIGINT key
there is already the table's only index on it, and it has no rowid.

Revision ID: 0013
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None

_ENTRY_INDEXES = {
    "ix_log_entries_tenant_ts": ["tenant_id", "ts"],
    "ix_log_entries_peer_ts": ["peer_id", "ts"],
    "ix_log_entries_type_ts": ["type", "ts"],
    "ix_log_entries_ts": ["ts"],
}
_ENTRY_COLUMNS = "idx, leaf, leaf_hash, type, tenant_id, peer_id, ts, redacted_at"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(rowid_keys=True)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(rowid_keys=False)


def _rebuild(*, rowid_keys: bool) -> None:
    """Copy both tables into the new (or, going down, the old) layout, then swap names."""
    op.create_table(
        "log_entries_rebuilt",
        sa.Column("idx", sa.Integer() if rowid_keys else sa.BigInteger(), autoincrement=False,
                  nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=36), nullable=True),
        sa.Column("peer_id", sa.String(length=36), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redacted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("idx", name="pk_log_entries"),
    )
    op.execute(f"INSERT INTO log_entries_rebuilt ({_ENTRY_COLUMNS}) "  # noqa: S608
               f"SELECT {_ENTRY_COLUMNS} FROM log_entries ORDER BY idx")
    op.drop_table("log_entries")
    op.rename_table("log_entries_rebuilt", "log_entries")
    # The copy is indexed once, after it is complete (cheaper than row by row).
    for name, columns in _ENTRY_INDEXES.items():
        op.create_index(name, "log_entries", columns)

    op.create_table(
        "log_nodes_rebuilt",
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_log_nodes"),
        sqlite_with_rowid=not rowid_keys,
    )
    op.execute("INSERT INTO log_nodes_rebuilt (level, idx, hash) "
               "SELECT level, idx, hash FROM log_nodes ORDER BY level, idx")
    op.drop_table("log_nodes")
    op.rename_table("log_nodes_rebuilt", "log_nodes")
