"""Full-text search on questions: FTS5 on SQLite, a tsvector column with a GIN index on PostgreSQL.

SQLite: ``questions_fts`` is an FTS5 external-content table over ``questions(title, body_md)``
(rowid = ``questions.id``), kept in step by three triggers. The update trigger fires only when
the title or the body changes, so votes and activity (which update ``questions`` all the time)
never touch the index. The porter tokenizer stems English words as PostgreSQL's ``english``
configuration does (without its stop words).

PostgreSQL: ``questions.search`` is a stored generated column (title weighted A, body B) with a
GIN index; PostgreSQL keeps it in step by itself. See docs/qa-core.md, "Search".

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_UP = (
    """CREATE VIRTUAL TABLE questions_fts USING fts5(
        title, body_md, content='questions', content_rowid='id', tokenize='porter unicode61')""",
    """CREATE TRIGGER questions_fts_insert AFTER INSERT ON questions BEGIN
        INSERT INTO questions_fts(rowid, title, body_md) VALUES (new.id, new.title, new.body_md);
    END""",
    """CREATE TRIGGER questions_fts_delete AFTER DELETE ON questions BEGIN
        INSERT INTO questions_fts(questions_fts, rowid, title, body_md)
        VALUES ('delete', old.id, old.title, old.body_md);
    END""",
    """CREATE TRIGGER questions_fts_update AFTER UPDATE OF title, body_md ON questions BEGIN
        INSERT INTO questions_fts(questions_fts, rowid, title, body_md)
        VALUES ('delete', old.id, old.title, old.body_md);
        INSERT INTO questions_fts(rowid, title, body_md) VALUES (new.id, new.title, new.body_md);
    END""",
    "INSERT INTO questions_fts(questions_fts) VALUES ('rebuild')",
)
SQLITE_DOWN = (
    "DROP TRIGGER IF EXISTS questions_fts_update",
    "DROP TRIGGER IF EXISTS questions_fts_delete",
    "DROP TRIGGER IF EXISTS questions_fts_insert",
    "DROP TABLE IF EXISTS questions_fts",
)
POSTGRESQL_UP = (
    """ALTER TABLE questions ADD COLUMN search tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', title), 'A')
        || setweight(to_tsvector('english', body_md), 'B')) STORED""",
    "CREATE INDEX ix_questions_search ON questions USING gin (search)",
)
POSTGRESQL_DOWN = (
    "DROP INDEX IF EXISTS ix_questions_search",
    "ALTER TABLE questions DROP COLUMN IF EXISTS search",
)


def _run(statements: Sequence[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _run(SQLITE_UP)
    elif dialect == "postgresql":
        _run(POSTGRESQL_UP)
    else:
        raise NotImplementedError(f"no full-text search for the {dialect} dialect")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    _run(SQLITE_DOWN if dialect == "sqlite" else POSTGRESQL_DOWN)
