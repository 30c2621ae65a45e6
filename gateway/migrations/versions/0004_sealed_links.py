"""Sealed one-time links: a link may carry a config encrypted under its own token.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("config_links") as batch:
        batch.add_column(sa.Column("sealed_config", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("config_links") as batch:
        batch.drop_column("sealed_config")
