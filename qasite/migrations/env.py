"""Alembic environment: migrations run on a connection handed over by qasite.core.db.migrate.

Run them with ``herald-qa migrate`` (or at service start-up); ``alembic`` on the command line
is not needed. Autogenerate against a scratch database when the models change::

    python -m qasite revision -m "what changed"
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection

from qasite.domain.models import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through qasite.core.db.migrate (herald-qa migrate)")


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave full-text search to migration 0002: it is not in the models, never drop it."""
    if type_ == "table" and name is not None and name.startswith("questions_fts"):
        return False
    if type_ == "column" and name == "search" and obj.table.name == "questions":
        return False
    return not (type_ == "index" and name == "ix_questions_search")


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    include_object=include_object,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
