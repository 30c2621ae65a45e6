"""Many gateways: the gateways resource, peers and agent tokens bound to one, batch ids.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=255), nullable=False),
        sa.Column("pools", sa.Text(), nullable=False),
        sa.Column("egress", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("public_key", sa.String(length=44), nullable=True),
        sa.Column("listen_port", sa.Integer(), nullable=True),
        sa.Column("interface_ok", sa.Integer(), nullable=True),
        sa.Column("interface_detail", sa.String(length=500), nullable=True),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
        sa.UniqueConstraint("name", name=op.f("uq_gateways_name")),
    )
    op.create_table(
        "agent_batches",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("batch_id", sa.String(length=64), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", "batch_id", name=op.f("pk_agent_batches")),
    )
    with op.batch_alter_table("peers") as batch:
        batch.add_column(sa.Column("gateway_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("revision", sa.BigInteger(), nullable=True))
        batch.create_index("ix_peers_gateway_revision", ["gateway_id", "revision"])
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("gateway_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(sa.Column("default_gateway_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("default_gateway_id")
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("gateway_id")
    with op.batch_alter_table("peers") as batch:
        batch.drop_index("ix_peers_gateway_revision")
        batch.drop_column("revision")
        batch.drop_column("gateway_id")
    op.drop_table("agent_batches")
    op.drop_table("gateways")
