"""Alembic environment: migrations run on a connection handed over by publisher.qa.db.migrate.

Run them with ``herald-qa migrate`` (or at service start-up); ``alembic`` on the command line
is not needed. Autogenerate against a scratch database when the models change::

    python -m publisher.qa revision -m "what changed"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from publisher.qa.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through publisher.qa.db.migrate (herald-qa migrate)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
