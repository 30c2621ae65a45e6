"""Alembic environment: runs on the connection vpngw hands over (sync, inside run_sync)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import gateway.audit.schema  # noqa: F401
import gateway.approvals.schema  # noqa: F401
import provisioning.accounts.schema  # noqa: F401
from provisioning.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic revision --autogenerate` from a developer shell
    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///./schema.db"
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
