"""Regulator refusals: the rate limiter's window per key id, shared by every process.

Revision ID: 0011
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "regulator_refusal_windows",
        sa.Column("keyid", sa.String(length=128), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("logged", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("keyid", name=op.f("pk_regulator_refusal_windows")),
    )


def downgrade() -> None:
    op.drop_table("regulator_refusal_windows")
