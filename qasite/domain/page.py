"""A question page's version stamp and its rows, read in few round trips (issue 15, item 5).

:func:`page_stamp` reads, in one query, numbers that change whenever anything the page shows
changes, because every write that changes the page bumps one of them in its own transaction
(the same transaction as its outbox event):

* the question's ``edit_version`` (title, body, tags, acceptance), ``score_version`` (votes)
  and ``answer_count``;
* over its answers: how many, the largest id, the sums of ``edit_version`` and
  ``score_version``;
* over the comments of the question and of its answers: how many, the largest id, the sum of
  ``edit_version``;
* over their attachments: how many and the largest id.

Ids are never reused (``AUTOINCREMENT`` on SQLite, identities on PostgreSQL) and versions only
grow, so no sequence of writes brings a stamp back to an earlier value with other content:
an add raises the largest id past every id seen, a delete lowers the count for good (the rows
under a stamp's largest id can only disappear), an edit or a vote raises a sum. Author names
never change (no route renames a user). A page built after its stamp was read is therefore at
least as new as the stamp: a cache keyed by it never serves a page older than the last
committed write (:mod:`qasite.api.page`).

:func:`page_rows` reads the page itself with the authors' names joined in: the question with
its tags (one query), then its answers, comments and attachments, each only when the stamp
says there are some (no ORM objects: plain rows).
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from qasite.domain.models import (
    Answer,
    Attachment,
    Comment,
    Question,
    User,
    Vote,
)
from qasite.domain.tag_names import tag_names

PageRow = Any
"""A row of :func:`page_rows` (attribute access by column name; SQLAlchemy's ``Row``)."""

PageStamp = tuple[int, ...]
"""The numbers :func:`page_stamp` reads, in a fixed order (see the module's docstring)."""

_QUESTION, _ANSWERS, _QUESTION_COMMENTS, _ANSWER_COMMENTS, _QUESTION_FILES, _ANSWER_FILES = range(6)
_PARTS = 6


class ConnectionLost(Exception):
    """The stamp query failed on the driver's connection, which was dropped from the pool:
    the read may be tried again on another connection."""


_STAMP_SQL = """
SELECT 0, edit_version, score_version, answer_count, 0 FROM questions WHERE id = {q}
UNION ALL
SELECT 1, count(*), coalesce(max(id), 0), coalesce(sum(edit_version), 0),
       coalesce(sum(score_version), 0)
  FROM answers WHERE question_id = {q}
UNION ALL
SELECT 2, count(*), coalesce(max(id), 0), coalesce(sum(edit_version), 0), 0
  FROM comments WHERE question_id = {q}
UNION ALL
SELECT 3, count(*), coalesce(max(c.id), 0), coalesce(sum(c.edit_version), 0), 0
  FROM comments c JOIN answers a ON a.id = c.answer_id WHERE a.question_id = {q}
UNION ALL
SELECT 4, count(*), coalesce(max(id), 0), 0, 0 FROM attachments WHERE question_id = {q}
UNION ALL
SELECT 5, count(*), coalesce(max(f.id), 0), 0, 0
  FROM attachments f JOIN answers a ON a.id = f.answer_id WHERE a.question_id = {q}
"""
"""One row per part of the page (the numbers of :data:`_QUESTION`...). What is under the
answers is reached by a join on ``answers.question_id`` (an index scan per answer), never by
``answer_id IN (subquery)``, which PostgreSQL plans as a sequential scan of the whole table
(2.5 s on 1.5 M comments). 0.4 ms in ``EXPLAIN ANALYZE`` on 1 M questions, index scans only."""

_STAMP_BY_DIALECT = {
    "postgresql": _STAMP_SQL.format(q="$1"),  # asyncpg: one parameter, used six times
    "sqlite": _STAMP_SQL.format(q="?1"),
}


async def page_stamp(conn: AsyncConnection, question_id: int) -> PageStamp | None:
    """The page's version stamp in one query; None when the question does not exist.

    It runs on the driver's connection (asyncpg, aiosqlite) with a fixed text, because it
    runs on every read, hits included: through SQLAlchemy, building the statement, its cache
    key and its result took more of a worker's CPU than the query (py-spy, QA_CACHE.md). It
    takes no transaction: on PostgreSQL *conn* is in autocommit; on SQLite it runs before
    *conn* begins one, so what is read after it is at least as new.
    """
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    sql = _STAMP_BY_DIALECT[conn.dialect.name]
    try:
        if conn.dialect.name == "postgresql":
            rows = await driver.fetch(sql, question_id)
        else:
            rows = await driver.execute_fetchall(sql, (question_id,))
    except Exception as exc:  # the driver's own errors, which SQLAlchemy has not seen
        # A connection that failed here may be broken (a restarted server): never pooled again.
        await conn.invalidate()
        raise ConnectionLost(f"the page stamp query failed: {exc!r}") from exc
    return _stamp_of(rows)


def _stamp_of(rows: Iterable[Sequence[Any]]) -> PageStamp | None:
    by_part = {int(row[0]): tuple(int(v) for v in row[1:]) for row in rows}
    if _QUESTION not in by_part:
        return None
    return tuple(v for part in range(_PARTS) for v in by_part.get(part, (0, 0, 0, 0)))


class SqliteStamps:
    """Page stamps of a SQLite file read on the calling thread, with a connection of its own
    per thread (the event loop's), not through the pool and aiosqlite's thread.

    A cached page costs only its stamp, and on SQLite the hop to aiosqlite's thread and back
    (a queue, a wake-up, a callback into the loop) and the pool's checkout cost more than
    the query (~0.1 ms, index lookups in the process): the warm page took 0.54 ms of a
    worker's CPU against 0.37 on PostgreSQL (bench/results/QA_CACHE.md). The connection is
    read-only (``query_only``); in WAL mode a reader takes no lock a writer holds, and with
    no busy timeout a read that would wait fails at once (``sqlite3.Error``) instead of
    blocking the loop: the caller then reads the stamp the usual way. Each query is its own
    read transaction, so it sees every transaction committed before it started.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._connections: dict[int, sqlite3.Connection] = {}

    def read(self, question_id: int) -> PageStamp | None:
        """The stamp of *question_id*, None when it does not exist; raises ``sqlite3.Error``."""
        thread = threading.get_ident()
        conn = self._connections.get(thread)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("PRAGMA busy_timeout=0")
            self._connections[thread] = conn
        return _stamp_of(conn.execute(_STAMP_BY_DIALECT["sqlite"], (question_id,)).fetchall())

    def close(self) -> None:
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()


def _count(stamp: PageStamp, part: int) -> int:
    return stamp[4 * part]


def answers_in(stamp: PageStamp) -> int:
    return _count(stamp, _ANSWERS)


def comments_in(stamp: PageStamp) -> int:
    return _count(stamp, _QUESTION_COMMENTS) + _count(stamp, _ANSWER_COMMENTS)


def attachments_in(stamp: PageStamp) -> int:
    return _count(stamp, _QUESTION_FILES) + _count(stamp, _ANSWER_FILES)


@dataclass(frozen=True, slots=True)
class PageRowsLite:
    """The question (with ``author_name`` and ``tag_names``, comma-separated or None), its
    answers and all comments (each with ``author_name``), and attachments, in id order."""

    question: PageRow
    answers: Sequence[PageRow]
    comments: Sequence[PageRow]
    attachments: Sequence[PageRow]


@functools.cache
def _statements(dialect: str) -> dict[str, Any]:
    """The page's queries for *dialect*, built once: their SQLAlchemy cache keys are
    memoized on them, so a miss does not build and hash four statements again."""
    qid: BindParameter[int] = bindparam("qid")
    ids: BindParameter[list[int]] = bindparam("answer_ids", expanding=True)

    def under(model: type[Comment] | type[Attachment], with_answers: bool) -> ColumnElement[bool]:
        # A list of values, which PostgreSQL serves from the two indexes; a subquery there
        # is planned as a sequential scan.
        if not with_answers:
            return model.question_id == qid
        return or_(model.question_id == qid, model.answer_id.in_(ids))

    comment = select(*Comment.__table__.columns, User.display_name.label("author_name")).join(
        User, User.id == Comment.author_id
    )
    attachment = select(*Attachment.__table__.columns)
    return {
        "question": select(
            *Question.__table__.columns, User.display_name.label("author_name"), tag_names(dialect)
        )
        .join(User, User.id == Question.author_id)
        .where(Question.id == qid),
        "answers": select(*Answer.__table__.columns, User.display_name.label("author_name"))
        .join(User, User.id == Answer.author_id)
        .where(Answer.question_id == qid)
        .order_by(Answer.id),
        "comments": comment.where(under(Comment, False)).order_by(Comment.id),
        "comments+": comment.where(under(Comment, True)).order_by(Comment.id),
        "attachments": attachment.where(under(Attachment, False)).order_by(Attachment.id),
        "attachments+": attachment.where(under(Attachment, True)).order_by(Attachment.id),
    }


async def page_rows(
    conn: AsyncConnection, question_id: int, stamp: PageStamp
) -> PageRowsLite | None:
    """The page's rows (None if the question is gone); tag names (sorted by the caller) are
    limited to the channel grammar's tag alphabet, which has no comma."""
    statements = _statements(conn.dialect.name)
    params: dict[str, Any] = {"qid": question_id}
    question = (await conn.execute(statements["question"], params)).first()
    if question is None:
        return None
    answers: Sequence[PageRow] = ()
    comments: Sequence[PageRow] = ()
    attachments: Sequence[PageRow] = ()
    if answers_in(stamp):
        answers = (await conn.execute(statements["answers"], params)).all()
    params["answer_ids"] = [a.id for a in answers]
    more = "+" if answers else ""
    if comments_in(stamp):
        comments = (await conn.execute(statements["comments" + more], params)).all()
    if attachments_in(stamp):
        attachments = (await conn.execute(statements["attachments" + more], params)).all()
    return PageRowsLite(question, answers, comments, attachments)


async def votes_of(
    conn: AsyncConnection, user_id: int, question_id: int, answer_ids: Sequence[int]
) -> dict[str, int]:
    """*user_id*'s votes on the question and on *answer_ids*, by post (``question:<id>``,
    ``answer:<id>``); posts they did not vote on are absent. One query."""
    where = Vote.question_id == question_id
    if answer_ids:
        where = where | Vote.answer_id.in_(answer_ids)
    rows = await conn.execute(
        select(Vote.question_id, Vote.answer_id, Vote.value).where(Vote.user_id == user_id, where)
    )
    return {f"question:{q}" if q is not None else f"answer:{a}": int(value) for q, a, value in rows}
