"""Votes: one per user per post, +1 or -1, changed or retracted, never on your own post.

The score is kept consistent under concurrent voters by SQL, not by Python: the vote row and
``UPDATE ... SET score = score + :delta, score_version = score_version + 1 ... RETURNING``
happen in one transaction. On PostgreSQL the UPDATE's row lock orders concurrent votes on a
post, and the unique constraint ``(user_id, question_id)`` / ``(user_id, answer_id)`` turns a
user's own double submit into a 409 (IntegrityError) rather than two votes. On SQLite write
transactions are serialized (BEGIN IMMEDIATE).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain import events
from qasite.domain.errors import JustDeleted, NotAllowed
from qasite.domain.models import Answer, Question, Vote


@dataclass(frozen=True, slots=True)
class VoteResult:
    post: str
    score: int
    version: int
    my_vote: int


def _ref(post: Question | Answer) -> str:
    return events.post_ref(post)


async def cast_vote(
    session: AsyncSession, user_id: int, post: Question | Answer, value: int
) -> VoteResult:
    """Make *user_id*'s vote on *post* equal *value* (+1, -1, or 0 to retract).

    Raises :class:`NotAllowed` on your own post, :class:`JustDeleted` when a concurrent request
    deleted *post*. Emits a score event when the score changed.
    """
    if value not in (-1, 0, 1):
        raise ValueError(f"a vote is -1, 0 or 1, not {value}")
    if post.author_id == user_id:
        raise NotAllowed("vote on your own post")
    is_question = isinstance(post, Question)
    column = Vote.question_id if is_question else Vote.answer_id
    existing = await session.scalar(
        select(Vote).where(Vote.user_id == user_id, column == post.id).with_for_update()
    )
    old = existing.value if existing is not None else 0
    if value == old:
        return VoteResult(_ref(post), post.score, post.score_version, value)
    if existing is not None and value == 0:
        await session.delete(existing)
    elif existing is not None:
        existing.value = value
    elif is_question:
        session.add(Vote(user_id=user_id, question_id=post.id, value=value))
    else:
        session.add(Vote(user_id=user_id, answer_id=post.id, value=value))
    await session.flush()
    table = Question if is_question else Answer
    row = (
        await session.execute(
            update(table)
            .where(table.id == post.id)
            .values(score=table.score + (value - old), score_version=table.score_version + 1)
            .returning(table.score, table.score_version)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if row is None:
        raise JustDeleted("post", post.id)
    score, version = int(row[0]), int(row[1])
    question_id = post.id if isinstance(post, Question) else post.question_id
    events.score_changed(session, question_id, _ref(post), score, version)
    return VoteResult(_ref(post), score, version, value)
