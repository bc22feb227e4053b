"""Response bodies built from the domain's rows: questions, answers, comments, attachments.

Every post output names its author: :func:`question_out` fills in each ``author_name`` of a
whole question page with one ``IN`` query (:func:`with_names`), however many posts it holds;
the write routes, which have the author at hand, set it directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.api.schemas import AnswerOut, AttachmentOut, CommentOut, QuestionOut, QuestionSummary
from qasite.domain.models import Answer, Attachment, Comment, Question, User, Vote
from qasite.domain.names import display_name, names_of
from qasite.domain.posts import load_page
from qasite.domain.search import Found

EDIT_GRACE = dt.timedelta(milliseconds=1)
"""Only an edit moves a question's ``updated_at`` past its ``created_at`` (an accept bumps
``edit_version``, so that cannot tell). A question asks with the two equal; questions asked
before had them set by two column defaults a few microseconds apart: hence the grace."""


def question_edited_at(question: Question) -> dt.datetime | None:
    """When *question* was last edited (title, body or tags); None if never."""
    return question.updated_at if question.updated_at - question.created_at > EDIT_GRACE else None


def edited_at(post: Answer | Comment) -> dt.datetime | None:
    """When *post* was last edited; None if never (its ``edit_version`` counts only edits)."""
    return post.updated_at if post.edit_version > 0 else None


def attachment_out(attachment: Attachment) -> AttachmentOut:
    return AttachmentOut(
        id=attachment.id,
        url=f"/api/attachments/{attachment.id}",
        content_type=attachment.content_type,
        size_bytes=attachment.size_bytes,
        width=attachment.width,
        height=attachment.height,
        question_id=attachment.question_id,
        answer_id=attachment.answer_id,
    )


def summary_out(question: Question, author_name: str | None = None) -> QuestionSummary:
    """The question's line in a list; *author_name* as stored (None: the neutral label)."""
    return _line_out(question, display_name(author_name), [tag.name for tag in question.tags])


def found_out(found: Found) -> QuestionSummary:
    """A search result's line (:class:`qasite.domain.search.Found`: plain columns, no ORM)."""
    return _line_out(found.question, found.author_name, found.tags)


def _line_out(question: Any, author_name: str, tags: list[str]) -> QuestionSummary:
    """*question*: a :class:`Question` or a row with its summary's columns."""
    return QuestionSummary(
        id=question.id,
        author_id=question.author_id,
        author_name=author_name,
        title=question.title,
        tags=tags,
        score=question.score,
        answer_count=question.answer_count,
        accepted_answer_id=question.accepted_answer_id,
        created_at=question.created_at,
        last_activity_at=question.last_activity_at,
    )


def comment_out(comment: Comment, author: User | None = None) -> CommentOut:
    """*author*: the comment's author when the caller has it (else named by :func:`with_names`)."""
    out = CommentOut.model_validate(comment)
    out.edited_at = edited_at(comment)
    if author is not None:
        out.author_name = display_name(author.display_name)
    return out


def answer_out(
    answer: Answer,
    accepted_id: int | None,
    comments: Sequence[Comment] = (),
    attachments: Sequence[Attachment] = (),
    *,
    author: User | None = None,
) -> AnswerOut:
    """*author*: the answer's author when the caller has it (else named by :func:`with_names`)."""
    return AnswerOut(
        id=answer.id,
        question_id=answer.question_id,
        author_id=answer.author_id,
        author_name=display_name(author.display_name if author is not None else None),
        body_md=answer.body_md,
        body_html=answer.body_html,
        score=answer.score,
        score_version=answer.score_version,
        edit_version=answer.edit_version,
        accepted=answer.id == accepted_id,
        created_at=answer.created_at,
        updated_at=answer.updated_at,
        edited_at=edited_at(answer),
        comments=[comment_out(c) for c in comments],
        attachments=[attachment_out(a) for a in attachments],
    )


async def my_votes(
    session: AsyncSession, user_id: int, question: Question, answer_ids: Sequence[int]
) -> dict[str, Literal[-1, 1]]:
    """*user_id*'s votes on *question* and on *answer_ids*, by post (``question:<id>``,
    ``answer:<id>``); posts they did not vote on are absent. One query."""
    where = Vote.question_id == question.id
    if answer_ids:
        where = where | Vote.answer_id.in_(answer_ids)
    rows = await session.execute(
        select(Vote.question_id, Vote.answer_id, Vote.value).where(Vote.user_id == user_id, where)
    )
    return {
        f"question:{q}" if q is not None else f"answer:{a}": cast(Literal[-1, 1], value)
        for q, a, value in rows
    }


async def question_out(
    session: AsyncSession, question: Question, *, viewer_id: int | None = None
) -> QuestionOut:
    """The whole question page: the question, its answers, comments and attachments, named;
    with *viewer_id*, each post's ``my_vote`` is that user's vote on it."""
    rows = await load_page(session, question)
    out = QuestionOut(
        **summary_out(question).model_dump(),
        body_md=question.body_md,
        body_html=question.body_html,
        score_version=question.score_version,
        edit_version=question.edit_version,
        updated_at=question.updated_at,
        edited_at=question_edited_at(question),
        answers=[
            answer_out(
                a,
                question.accepted_answer_id,
                [c for c in rows.comments if c.answer_id == a.id],
                [f for f in rows.attachments if f.answer_id == a.id],
            )
            for a in rows.answers
        ],
        comments=[comment_out(c) for c in rows.comments if c.question_id is not None],
        attachments=[attachment_out(f) for f in rows.attachments if f.question_id is not None],
    )
    if viewer_id is not None:
        votes = await my_votes(session, viewer_id, question, [a.id for a in rows.answers])
        out.my_vote = votes.get(f"question:{question.id}", 0)
        for answer in out.answers:
            answer.my_vote = votes.get(f"answer:{answer.id}", 0)
    return await with_names(session, out)


Named = QuestionOut | AnswerOut | CommentOut
T = TypeVar("T", QuestionOut, AnswerOut, CommentOut)


def _posts(outs: Iterable[Named]) -> Iterator[Named]:
    """Every post of *outs*, with the answers and comments under them."""
    for out in outs:
        yield out
        if isinstance(out, QuestionOut):
            yield from _posts(out.answers)
        if isinstance(out, QuestionOut | AnswerOut):
            yield from out.comments


async def with_names(session: AsyncSession, out: T) -> T:
    """*out* with ``author_name`` set on it and on every post under it."""
    posts = list(_posts([out]))
    names = await names_of(session, (post.author_id for post in posts))
    for post in posts:
        post.author_name = display_name(names.get(post.author_id))
    return out
