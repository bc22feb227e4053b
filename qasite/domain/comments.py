"""Writing comments: on a question or on an answer; edit and delete.

Each function writes in the caller's transaction (the row, its event, the inbox item) and
leaves the commit to the caller. Ownership is checked before these are called.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain import events
from qasite.domain.inbox import InboxKind, notify, publish_unread, unread_holders
from qasite.domain.models import Answer, Comment, InboxItem, Question, User, utcnow
from qasite.domain.posts import load_answer, relock


async def post_comment(
    session: AsyncSession, author: User, body: str, question: Question, answer: Answer | None
) -> Comment:
    """Add *author*'s comment on *answer* (of *question*), or on *question* when *answer* is
    None; the commented post's author gets an inbox item."""
    question.last_activity_at = utcnow()
    comment = Comment(
        author_id=author.id,
        question_id=question.id if answer is None else None,
        answer_id=None if answer is None else answer.id,
        body=body,
    )
    session.add(comment)
    await session.flush()
    events.comment_posted(session, question.id, comment, author_name=author.display_name)
    await notify(
        session,
        recipient_id=(question if answer is None else answer).author_id,
        actor=author,
        kind=InboxKind.COMMENT,
        text=body,
        question_id=question.id,
        answer_id=comment.answer_id,
        comment_id=comment.id,
    )
    return comment


async def edit_comment(session: AsyncSession, comment: Comment, body: str) -> None:
    """Replace *comment*'s text (a new ``edit_version``)."""
    await relock(session, comment)
    comment.body = body
    comment.edit_version += 1
    comment.updated_at = utcnow()
    await session.flush()
    events.comment_edited(session, await question_of(session, comment), comment)


async def delete_comment(session: AsyncSession, comment: Comment) -> None:
    """Delete *comment* and the inbox items it caused (their holders get new unread counts)."""
    question_id = await question_of(session, comment)
    holders = await unread_holders(session, InboxItem.comment_id == comment.id)
    events.deleted(session, question_id, f"comment:{comment.id}")
    await session.delete(comment)
    await publish_unread(session, holders)


async def question_of(session: AsyncSession, comment: Comment) -> int:
    """The id of the question *comment* is under (directly or through its answer)."""
    if comment.question_id is not None:
        return comment.question_id
    assert comment.answer_id is not None, "a comment is on a question or on an answer"
    return (await load_answer(session, comment.answer_id)).question_id
