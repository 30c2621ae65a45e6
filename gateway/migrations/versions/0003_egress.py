"""Egress: the mapping last logged per gateway, and its intervals for regulator queries.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "egress_configs",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("configured_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_egress_configs")),
    )
    op.create_table(
        "egress_intervals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False),
        sa.Column("start_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("start_idx", sa.BigInteger(), nullable=False),
        sa.Column("end_ts", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_idx", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_egress_intervals")),
    )
    op.create_index("ix_egress_intervals_start", "egress_intervals", ["start_ts"])


def downgrade() -> None:
    op.drop_index("ix_egress_intervals_start", table_name="egress_intervals")
    op.drop_table("egress_intervals")
    op.drop_table("egress_configs")
