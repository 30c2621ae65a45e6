"""Payloads sealed at rest: the outbox keeps each leaf's hash beside its sealed bytes.

Existing rows stay as they are: their plaintext leaves (first byte "{") remain readable,
and the sequencer hashes an outbox row that has no stored hash.

Revision ID: 0009
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("leaf_hash")
