"""The Q&A core's tables (SQLAlchemy 2 declarative; the schema is described in docs/qa-core.md).

Conventions:

* ids are 64-bit integers (``INTEGER PRIMARY KEY`` on SQLite so that rowids are reused as ids,
  ``BIGINT`` identity on PostgreSQL); they appear in channel names (``question:<id>``).
* times are timezone-aware UTC.
* a post is a question or an answer. Comments, votes and attachments point at exactly one of
  them through two nullable foreign keys and a CHECK constraint, so every reference is a real
  foreign key with ``ON DELETE CASCADE``.
* ``score`` and ``score_version`` change only through one atomic ``UPDATE`` in the vote's own
  transaction (:mod:`qasite.domain.votes`); ``edit_version`` counts edits the same way. Both
  versions travel in events so a client can drop an older state.
* questions keep ``title`` and ``body_md`` in plain columns so full-text search can be added
  beside the table (an FTS5 external-content table on SQLite, a ``tsvector`` on PostgreSQL)
  without changing this schema; see docs/qa-core.md.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

BigId = BigInteger().with_variant(Integer(), "sqlite")
"""64-bit ids; on SQLite only ``INTEGER PRIMARY KEY`` is an alias of the rowid."""

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MAX_TITLE = 150
MAX_BODY = 30_000
MAX_COMMENT = 600
MAX_TAGS = 5
MAX_EMAIL = 254


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_event_id() -> str:
    """A random event id: unique across databases, so a reset database never collides in Redis."""
    return "qa-" + secrets.token_hex(12)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out, on both databases.

    SQLite has no time zones: values are stored as naive UTC text (which sorts in time
    order) and come back marked UTC, so comparisons never mix naive and aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


NEVER_REUSE_IDS = {"sqlite_autoincrement": True}
"""SQLite reuses the largest rowid after a delete unless the table is AUTOINCREMENT; ids
travel in channel names and events, so a deleted post's id must never name another one."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime()}  # noqa: RUF012


def _id() -> Mapped[int]:
    return mapped_column(BigId, primary_key=True, autoincrement=True)


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> Mapped[Any]:
    return mapped_column(
        BigId, ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = _id()
    email: Mapped[str] = mapped_column(String(MAX_EMAIL), unique=True)
    """Stored lowercased, so uniqueness is case-insensitive."""
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EmailVerification(Base):
    """A pending verification link; only the SHA-256 of the token is stored."""

    __tablename__ = "email_verifications"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = _id()
    user_id: Mapped[int] = _fk("users.id")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class RefreshToken(Base):
    """A refresh token (SHA-256 stored); revoked at logout and when rotated by a refresh."""

    __tablename__ = "refresh_tokens"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = _id()
    user_id: Mapped[int] = _fk("users.id")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]


question_tags = Table(
    "question_tags",
    Base.metadata,
    Column("question_id", BigId, ForeignKey("questions.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", BigId, ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_question_tags_tag_id_question_id", "tag_id", "question_id"),
)


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = _id()
    name: Mapped[str] = mapped_column(String(35), unique=True)
    """The channel grammar's tag alphabet (herald_contract.channels), so ``tag:<name>`` is valid."""


class Question(Base):
    __tablename__ = "questions"
    __table_args__ = (
        Index("ix_questions_created_at_id", "created_at", "id"),
        Index("ix_questions_score_id", "score", "id"),
        Index("ix_questions_last_activity_at_id", "last_activity_at", "id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = _id()
    author_id: Mapped[int] = _fk("users.id")
    title: Mapped[str] = mapped_column(String(MAX_TITLE))
    body_md: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    score: Mapped[int] = mapped_column(Integer, default=0)
    score_version: Mapped[int] = mapped_column(Integer, default=0)
    edit_version: Mapped[int] = mapped_column(Integer, default=0)
    answer_count: Mapped[int] = mapped_column(Integer, default=0)
    accepted_answer_id: Mapped[int | None] = mapped_column(
        BigId,
        ForeignKey("answers.id", ondelete="SET NULL", use_alter=True),
        nullable=True,
    )
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_activity_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tags: Mapped[list[Tag]] = relationship(secondary=question_tags, order_by=Tag.name)


class Answer(Base):
    __tablename__ = "answers"
    __table_args__ = (Index("ix_answers_question_id_id", "question_id", "id"), NEVER_REUSE_IDS)

    id: Mapped[int] = _id()
    question_id: Mapped[int] = mapped_column(BigId, ForeignKey("questions.id", ondelete="CASCADE"))
    author_id: Mapped[int] = _fk("users.id")
    body_md: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str] = mapped_column(Text)
    score: Mapped[int] = mapped_column(Integer, default=0)
    score_version: Mapped[int] = mapped_column(Integer, default=0)
    edit_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


_ONE_POST = "(question_id IS NULL) <> (answer_id IS NULL)"


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (CheckConstraint(_ONE_POST, name="one_post"), NEVER_REUSE_IDS)

    id: Mapped[int] = _id()
    author_id: Mapped[int] = _fk("users.id")
    question_id: Mapped[int | None] = _fk("questions.id", nullable=True)
    answer_id: Mapped[int | None] = _fk("answers.id", nullable=True)
    body: Mapped[str] = mapped_column(String(MAX_COMMENT))
    edit_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Vote(Base):
    """One vote per user per post: the unique constraints are what makes it one."""

    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint(_ONE_POST, name="one_post"),
        CheckConstraint("value IN (-1, 1)", name="value"),
        UniqueConstraint("user_id", "question_id"),
        UniqueConstraint("user_id", "answer_id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = _fk("users.id")
    question_id: Mapped[int | None] = _fk("questions.id", nullable=True)
    answer_id: Mapped[int | None] = _fk("answers.id", nullable=True)
    value: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class InboxItem(Base):
    __tablename__ = "inbox_items"
    __table_args__ = (
        Index("ix_inbox_items_user_id_id", "user_id", "id"),
        Index("ix_inbox_items_user_id_read_at", "user_id", "read_at"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = _id()
    user_id: Mapped[int] = mapped_column(BigId, ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    """``answer`` (your question was answered), ``comment``, ``accepted``."""
    actor_id: Mapped[int | None] = _fk("users.id", nullable=True, ondelete="SET NULL")
    question_id: Mapped[int | None] = _fk("questions.id", nullable=True)
    answer_id: Mapped[int | None] = _fk("answers.id", nullable=True)
    comment_id: Mapped[int | None] = _fk("comments.id", nullable=True)
    excerpt: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    read_at: Mapped[dt.datetime | None]


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (CheckConstraint(_ONE_POST, name="one_post"), NEVER_REUSE_IDS)

    id: Mapped[int] = _id()
    owner_id: Mapped[int] = _fk("users.id")
    question_id: Mapped[int | None] = _fk("questions.id", nullable=True)
    answer_id: Mapped[int | None] = _fk("answers.id", nullable=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_name: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutboxEvent(Base):
    """An event written in the transaction of the change it describes; the relay publishes it.

    Rows are published in ``id`` order and marked with ``published_at``; ``event_id`` is the
    idempotency key given to the bus, so a row published again after a crash between the
    publish and the mark is not delivered twice.
    """

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_published_at_id", "published_at", "id"), NEVER_REUSE_IDS)

    id: Mapped[int] = _id()
    event_id: Mapped[str] = mapped_column(String(64), unique=True, default=new_event_id)
    channel: Mapped[str] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None]
