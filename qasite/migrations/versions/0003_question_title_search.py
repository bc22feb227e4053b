"""Relevance ranks only the title matches: an index of the title's words on PostgreSQL.

Relevance (docs/qa-core.md, "Search") ranks the questions with every word of the query in
the title, then lists the other matches newest first. PostgreSQL finds the title matches
through a GIN expression index on ``to_tsvector('english', title)`` (the same words as the
title part, weight A, of ``questions.search``); the query names the expression with the
constant ``'english'::regconfig`` so that the planner matches it. Without it, finding the
title matches means reading every match of the query from the table, the cost this
revision removes (bench/results/QA_SEARCH.md).

SQLite needs nothing: FTS5 restricts a match to the title with a column filter
(``{title} : (...)``) on the index of migration 0002.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

POSTGRESQL_UP = (
    """CREATE INDEX ix_questions_title_search ON questions
        USING gin (to_tsvector('english'::regconfig, title))""",
)
POSTGRESQL_DOWN = ("DROP INDEX IF EXISTS ix_questions_title_search",)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for statement in POSTGRESQL_UP:
            op.execute(statement)
    elif dialect != "sqlite":
        raise NotImplementedError(f"no full-text search for the {dialect} dialect")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in POSTGRESQL_DOWN:
            op.execute(statement)
