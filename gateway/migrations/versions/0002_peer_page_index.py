"""Index peers by (tenant_id, id) so a tenant's peer list pages without sorting.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_peers_tenant_id", "peers", ["tenant_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_peers_tenant_id", table_name="peers")
