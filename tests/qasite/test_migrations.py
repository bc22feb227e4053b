"""Migrations (qasite/migrations): the migrated schema is the models' schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from qasite.core.db import Database, migrate
from qasite.core.settings import Settings
from qasite.domain.models import Base


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrating_to_head_gives_exactly_the_models_schema(settings: Settings) -> None:
    db = Database.open(settings)
    try:
        await migrate(db.engine)
        await migrate(db.engine)  # a second run is a no-op
        async with db.engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await db.close()
    # Search tables and columns added by later migrations are not mapped: ignore additions.
    unexpected = [
        d for d in differences if not (isinstance(d, tuple) and d[0].startswith("remove_"))
    ]
    assert unexpected == []
