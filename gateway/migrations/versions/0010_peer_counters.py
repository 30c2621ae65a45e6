"""A per-tenant count of active peers, kept in the same transaction as the peers it counts.

The quota check reads this counter instead of counting the tenant's peers on every
provisioning request (a count that grew with the tenant).

Revision ID: 0010
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(
            sa.Column("active_peers", sa.Integer(), server_default="0", nullable=False)
        )
    op.execute(
        "UPDATE tenants SET active_peers = (SELECT count(*) FROM peers "
        "WHERE peers.tenant_id = tenants.id AND peers.status = 'active')"
    )


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("active_peers")
