"""The question page as JSON bytes, from the page cache when its versions still hold (issue 15,
item 5; what Stack Overflow does for the page every view reads).

Each read costs one query on a hit: the page's version stamp
(:func:`qasite.domain.page.page_stamp`), compared with the stamp the cached bytes were built
at, in the process (L1) and then in Redis (L2, when configured). On a miss the page is read
with the authors' names joined in (:func:`qasite.domain.page.page_rows`: two to four queries
instead of seven), built as :class:`~qasite.api.schemas.QuestionOut` and serialised once by
pydantic-core; the bytes are kept at the stamp read *before* the rows, so they are never
older than it. A signed-in viewer gets the same bytes with their votes filled in (one more
query).

On a SQLite file an anonymous read first reads the stamp without the pool, on the event
loop's thread (:class:`~qasite.domain.page.SqliteStamps`): an L1 hit is then answered with no
pooled connection and no hop to aiosqlite's thread; anything else takes the path above.

Reads on PostgreSQL run in autocommit (no ``BEGIN``/``ROLLBACK`` round trips): each statement
sees the data committed when it starts, as in the READ COMMITTED transaction it replaces.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from qasite.api.outputs import EDIT_GRACE, attachment_out
from qasite.api.schemas import AnswerOut, AttachmentOut, CommentOut, QuestionOut
from qasite.core.db import POOL_OVERFLOW, POOL_SIZE, Database
from qasite.core.page_cache import PageCache
from qasite.domain.errors import NotFound
from qasite.domain.names import display_name
from qasite.domain.page import (
    ConnectionLost,
    PageRowsLite,
    SqliteStamps,
    page_rows,
    page_stamp,
    votes_of,
)


@asynccontextmanager
async def read_connection(db: Database) -> AsyncIterator[AsyncConnection]:
    """A connection for the page's reads: autocommit on PostgreSQL, a deferred read
    transaction on SQLite (in-process, so its ``BEGIN`` costs no round trip)."""
    async with db.engine.connect() as conn:
        if db.dialect == "postgresql":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def _comment(row: Any) -> CommentOut:
    return CommentOut(
        id=row.id,
        author_id=row.author_id,
        author_name=display_name(row.author_name),
        question_id=row.question_id,
        answer_id=row.answer_id,
        body=row.body,
        edit_version=row.edit_version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        edited_at=row.updated_at if row.edit_version > 0 else None,
    )


def build_page(rows: PageRowsLite) -> QuestionOut:
    """The page as :func:`qasite.api.outputs.question_out` builds it, from plain rows."""
    q = rows.question
    comments_of: dict[int, list[CommentOut]] = {}
    on_question: list[CommentOut] = []
    for row in rows.comments:
        out = _comment(row)
        if row.question_id is not None:
            on_question.append(out)
        else:
            comments_of.setdefault(row.answer_id, []).append(out)
    files_of: dict[int, list[AttachmentOut]] = {}
    files_on_question: list[AttachmentOut] = []
    for row in rows.attachments:
        if row.question_id is not None:
            files_on_question.append(attachment_out(row))
        else:
            files_of.setdefault(row.answer_id, []).append(attachment_out(row))
    answers = [
        AnswerOut(
            id=a.id,
            question_id=a.question_id,
            author_id=a.author_id,
            author_name=display_name(a.author_name),
            body_md=a.body_md,
            body_html=a.body_html,
            score=a.score,
            score_version=a.score_version,
            edit_version=a.edit_version,
            accepted=a.id == q.accepted_answer_id,
            created_at=a.created_at,
            updated_at=a.updated_at,
            edited_at=a.updated_at if a.edit_version > 0 else None,
            comments=comments_of.get(a.id, []),
            attachments=files_of.get(a.id, []),
        )
        for a in rows.answers
    ]
    return QuestionOut(
        id=q.id,
        author_id=q.author_id,
        author_name=display_name(q.author_name),
        title=q.title,
        tags=sorted(set(q.tag_names.split(","))) if q.tag_names else [],
        score=q.score,
        answer_count=q.answer_count,
        accepted_answer_id=q.accepted_answer_id,
        created_at=q.created_at,
        last_activity_at=q.last_activity_at,
        body_md=q.body_md,
        body_html=q.body_html,
        score_version=q.score_version,
        edit_version=q.edit_version,
        updated_at=q.updated_at,
        edited_at=q.updated_at if q.updated_at - q.created_at > EDIT_GRACE else None,
        answers=answers,
        comments=on_question,
        attachments=files_on_question,
    )


async def question_page(
    db: Database, cache: PageCache | None, question_id: int, viewer_id: int | None
) -> bytes:
    """The page of *question_id* as JSON; :class:`NotFound` when it does not exist.

    A read on a pooled connection found dead (PostgreSQL restarted: the pool does not ping
    before use, qasite/core/db.py) is tried again on another, which may be dead too (each
    attempt drops its own): at most once per connection the pool holds, then on a new one."""
    for _ in range(POOL_SIZE + POOL_OVERFLOW):
        try:
            return await _question_page(db, cache, question_id, viewer_id)
        except ConnectionLost:
            continue
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
    return await _question_page(db, cache, question_id, viewer_id)


async def _question_page(
    db: Database, cache: PageCache | None, question_id: int, viewer_id: int | None
) -> bytes:
    if viewer_id is None and cache is not None and db.stamps is not None:
        body = _held_at_quick_stamp(db.stamps, cache, question_id)
        if body is not None:
            return body
    async with read_connection(db) as conn:
        stamp = await page_stamp(conn, question_id)
        if stamp is None:
            raise NotFound("question", question_id)
        body = None if cache is None else await cache.get(question_id, stamp)
        if body is None:
            rows = await page_rows(conn, question_id, stamp)
            if rows is None:  # deleted since the stamp was read
                raise NotFound("question", question_id)
            body = build_page(rows).model_dump_json().encode()
            if cache is not None:
                await cache.put(question_id, stamp, body)
        if viewer_id is None:
            return body
        return await _with_votes(conn, body, question_id, viewer_id)


def _held_at_quick_stamp(stamps: SqliteStamps, cache: PageCache, question_id: int) -> bytes | None:
    """On SQLite, the page from L1 at a stamp read without the pool; None for everything
    else (a miss, a missing question, a stamp read that failed), which the usual path then
    answers, counting its own lookups."""
    try:
        stamp = stamps.read(question_id)
    except sqlite3.Error:
        return None
    return None if stamp is None else cache.local_hit(question_id, stamp)


async def _with_votes(
    conn: AsyncConnection, body: bytes, question_id: int, viewer_id: int
) -> bytes:
    """*body* with ``my_vote`` set on the question and on each answer for *viewer_id*."""
    page = json.loads(body)
    answers = page.get("answers", [])
    votes = await votes_of(conn, viewer_id, question_id, [a["id"] for a in answers])
    page["my_vote"] = votes.get(f"question:{question_id}", 0)
    for answer in answers:
        answer["my_vote"] = votes.get(f"answer:{answer['id']}", 0)
    return json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode()
