"""Initial schema: users, tokens, questions, answers, comments, votes, inbox, attachments, outbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Tables with an id are AUTOINCREMENT on SQLite, so the id of a deleted row is never given to
a new one (ids travel in channel names and events: ``answer:4`` must not come back as
someone else's answer). The tables are written with a few helpers that spell the models'
conventions once (an id column, references, times, constraint and index names); the schema
they make is the one the models describe (tests/qasite/test_migrations.py).
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Ids and references to them: BIGINT, and INTEGER on SQLite (where it aliases the rowid)."""

ONE_POST = "(question_id IS NULL) <> (answer_id IS NULL)"
"""A comment, vote or attachment is on exactly one post."""

INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "outbox": (("published_at", "id"),),
    "email_verifications": (("user_id",),),
    "questions": (("author_id",), ("created_at", "id"), ("last_activity_at", "id"),
                  ("score", "id")),
    "refresh_tokens": (("user_id",),),
    "answers": (("author_id",), ("question_id", "id")),
    "question_tags": (("tag_id", "question_id"),),
    "attachments": (("answer_id",), ("owner_id",), ("question_id",)),
    "comments": (("answer_id",), ("author_id",), ("question_id",)),
    "votes": (("answer_id",), ("question_id",), ("user_id",)),
    "inbox_items": (("actor_id",), ("answer_id",), ("comment_id",), ("question_id",),
                    ("user_id", "id"), ("user_id", "read_at")),
}  # fmt: skip
"""Each table's indexes by their columns, named ``ix_<table>_<columns>``."""

TABLES = ("outbox", "tags", "users", "email_verifications", "questions", "refresh_tokens",
          "answers", "question_tags", "attachments", "comments", "votes",
          "inbox_items")  # fmt: skip
"""In the order they are created (each after the tables it references)."""


def _ref(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, ID, nullable=nullable)


def _text(name: str, length: int | None = None, *, nullable: bool = False) -> sa.Column[Any]:
    kind = sa.Text() if length is None else sa.String(length=length)
    return sa.Column(name, kind, nullable=nullable)


def _int(name: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Integer(), nullable=False)


def _time(name: str, *, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _fk(table: str, column: str, target: str, ondelete: str = "CASCADE") -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], [f"{target}.id"], name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete
    )


def _unique(table: str, *columns: str) -> sa.UniqueConstraint:
    return sa.UniqueConstraint(*columns, name=op.f(f"uq_{table}_{'_'.join(columns)}"))


def _one_post(table: str) -> sa.CheckConstraint:
    return sa.CheckConstraint(ONE_POST, name=op.f(f"ck_{table}_one_post"))


def _table(name: str, *items: Any) -> None:
    """Create *name* with an AUTOINCREMENT ``id`` first, *items* after it, then its indexes."""
    op.create_table(
        name,
        sa.Column("id", ID, autoincrement=True, nullable=False),
        *items,
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sqlite_autoincrement=True,
    )
    _create_indexes(name)


def _create_indexes(table: str) -> None:
    if table not in INDEXES:
        return
    with op.batch_alter_table(table, schema=None) as batch_op:
        for columns in INDEXES[table]:
            batch_op.create_index(
                _index_name(batch_op, table, columns), list(columns), unique=False
            )


def _index_name(batch_op: Any, table: str, columns: tuple[str, ...]) -> str:
    # One-column indexes come from the models' index=True (named by the convention);
    # the others are declared by name in the models.
    name = f"ix_{table}_{'_'.join(columns)}"
    if len(columns) == 1:
        final: str = batch_op.f(name)  # a str marked as already named by the convention
        return final
    return name


def upgrade() -> None:
    """Upgrade schema."""
    _people()
    _posts()
    _around_posts()
    _reactions()


def _people() -> None:
    _table(
        "outbox",
        _text("event_id", 64),
        _text("channel", 64),
        sa.Column("payload", sa.JSON(), nullable=False),
        _time("created_at"),
        _time("published_at", nullable=True),
        _unique("outbox", "event_id"),
    )
    _table("tags", _text("name", 35), _unique("tags", "name"))
    _table(
        "users",
        _text("email", 254),
        _text("display_name", 64),
        _text("password_hash", 255),
        sa.Column("verified", sa.Boolean(), nullable=False),
        _time("created_at"),
        _unique("users", "email"),
    )
    _table(
        "email_verifications",
        _ref("user_id"),
        _text("token_hash", 64),
        _time("expires_at"),
        _time("used_at", nullable=True),
        _fk("email_verifications", "user_id", "users"),
        _unique("email_verifications", "token_hash"),
    )


def _posts() -> None:
    _table(
        "questions",
        _ref("author_id"),
        _text("title", 150),
        _text("body_md"),
        _text("body_html"),
        _int("score"),
        _int("score_version"),
        _int("edit_version"),
        _int("answer_count"),
        _ref("accepted_answer_id", nullable=True),
        _time("created_at"),
        _time("updated_at"),
        _time("last_activity_at"),
        _fk("questions", "author_id", "users"),
    )
    _table(
        "refresh_tokens",
        _ref("user_id"),
        _text("token_hash", 64),
        _time("created_at"),
        _time("expires_at"),
        _time("revoked_at", nullable=True),
        _fk("refresh_tokens", "user_id", "users"),
        _unique("refresh_tokens", "token_hash"),
    )
    _table(
        "answers",
        _ref("question_id"),
        _ref("author_id"),
        _text("body_md"),
        _text("body_html"),
        _int("score"),
        _int("score_version"),
        _int("edit_version"),
        _time("created_at"),
        _time("updated_at"),
        _fk("answers", "author_id", "users"),
        _fk("answers", "question_id", "questions"),
    )
    # questions and answers point at each other: the accepted answer's key comes last.
    # On SQLite this batch copies the table: it must keep AUTOINCREMENT.
    with op.batch_alter_table(
        "questions", schema=None, table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_questions_accepted_answer_id_answers"),
            "answers",
            ["accepted_answer_id"],
            ["id"],
            ondelete="SET NULL",
        )


def _around_posts() -> None:
    """The tags of questions and the attachments of posts."""
    op.create_table(
        "question_tags",
        _ref("question_id"),
        _ref("tag_id"),
        _fk("question_tags", "question_id", "questions"),
        _fk("question_tags", "tag_id", "tags"),
        sa.PrimaryKeyConstraint("question_id", "tag_id", name=op.f("pk_question_tags")),
    )
    _create_indexes("question_tags")
    _table(
        "attachments",
        _ref("owner_id"),
        _ref("question_id", nullable=True),
        _ref("answer_id", nullable=True),
        _text("content_type", 64),
        _int("size_bytes"),
        _int("width"),
        _int("height"),
        _text("sha256", 64),
        _text("storage_name", 128),
        _time("created_at"),
        _one_post("attachments"),
        _fk("attachments", "answer_id", "answers"),
        _fk("attachments", "owner_id", "users"),
        _fk("attachments", "question_id", "questions"),
        _unique("attachments", "storage_name"),
    )


def _reactions() -> None:
    """What people add to posts and what it tells others: comments, votes, inbox items."""
    _table(
        "comments",
        _ref("author_id"),
        _ref("question_id", nullable=True),
        _ref("answer_id", nullable=True),
        _text("body", 600),
        _int("edit_version"),
        _time("created_at"),
        _time("updated_at"),
        _one_post("comments"),
        _fk("comments", "answer_id", "answers"),
        _fk("comments", "author_id", "users"),
        _fk("comments", "question_id", "questions"),
    )
    _table(
        "votes",
        _ref("user_id"),
        _ref("question_id", nullable=True),
        _ref("answer_id", nullable=True),
        sa.Column("value", sa.SmallInteger(), nullable=False),
        _time("created_at"),
        _one_post("votes"),
        sa.CheckConstraint("value IN (-1, 1)", name=op.f("ck_votes_value")),
        _fk("votes", "answer_id", "answers"),
        _fk("votes", "question_id", "questions"),
        _fk("votes", "user_id", "users"),
        _unique("votes", "user_id", "answer_id"),
        _unique("votes", "user_id", "question_id"),
    )
    _table(
        "inbox_items",
        _ref("user_id"),
        _text("kind", 16),
        _ref("actor_id", nullable=True),
        _ref("question_id", nullable=True),
        _ref("answer_id", nullable=True),
        _ref("comment_id", nullable=True),
        _text("excerpt", 200),
        _time("created_at"),
        _time("read_at", nullable=True),
        _fk("inbox_items", "actor_id", "users", ondelete="SET NULL"),
        _fk("inbox_items", "answer_id", "answers"),
        _fk("inbox_items", "comment_id", "comments"),
        _fk("inbox_items", "question_id", "questions"),
        _fk("inbox_items", "user_id", "users"),
    )


def downgrade() -> None:
    """Downgrade schema: every table in reverse order, its indexes first; the accepted
    answer's key goes before the answers."""
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for columns in reversed(INDEXES.get(table, ())):
                batch_op.drop_index(_index_name(batch_op, table, columns))
        if table == "answers":
            with op.batch_alter_table("questions", schema=None) as batch_op:
                batch_op.drop_constraint(
                    op.f("fk_questions_accepted_answer_id_answers"), type_="foreignkey"
                )
        op.drop_table(table)
