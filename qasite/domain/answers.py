"""Writing answers: post, edit, delete, accept and withdraw acceptance.

Each function writes in the caller's transaction (rows, the events they cause, inbox items)
and leaves the commit to the caller, so a failure anywhere writes nothing. Who may do what
(your own answer, the question's author accepting) is checked before these are called.
Writers lock the question's row first, then rows under it (:func:`~qasite.domain.posts.relock`).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain import events
from qasite.domain.inbox import InboxKind, notify, publish_unread, unread_holders
from qasite.domain.models import Answer, InboxItem, Question, User, utcnow
from qasite.domain.posts import attachment_files, change_answer_count, relock
from qasite.domain.rendering import Rendered


async def post_answer(
    session: AsyncSession, question: Question, author: User, body: Rendered
) -> Answer:
    """Add *author*'s answer with Markdown *body*; counts it, announces it, tells the asker."""
    answer = Answer(
        question_id=question.id,
        author_id=author.id,
        body_md=body.markdown,
        body_html=body.html,
    )
    session.add(answer)
    await session.flush()
    count = await change_answer_count(session, question.id, +1, active=True)
    events.answer_posted(session, answer, count, author_name=author.display_name)
    await notify(
        session,
        recipient_id=question.author_id,
        actor=author,
        kind=InboxKind.ANSWER,
        text=body.markdown,
        question_id=question.id,
        answer_id=answer.id,
    )
    return answer


async def edit_answer(
    session: AsyncSession, question: Question, answer: Answer, body: Rendered
) -> None:
    """Replace *answer*'s body (a new ``edit_version``); *question* is its question, locked."""
    await relock(session, answer)
    answer.body_md, answer.body_html = body.markdown, body.html
    answer.edit_version += 1
    answer.updated_at = utcnow()
    question.last_activity_at = answer.updated_at
    await session.flush()
    events.post_edited(session, answer.question_id, answer)


async def delete_answer(session: AsyncSession, question: Question, answer: Answer) -> list[str]:
    """Delete *answer* with its comments, votes and inbox items; *question* is its question,
    locked. Returns the stored names of its attachments' files, to delete after the commit."""
    files = await attachment_files(session, answer)
    holders = await unread_holders(session, InboxItem.answer_id == answer.id)
    if question.accepted_answer_id == answer.id:
        _set_accepted(session, question, None)
    await session.delete(answer)
    count = await change_answer_count(session, question.id, -1, active=False)
    events.deleted(session, question.id, f"answer:{answer.id}", answer_count=count)
    await publish_unread(session, holders)
    return files


async def accept_answer(
    session: AsyncSession, question: Question, answer: Answer, asker: User
) -> None:
    """*asker* (the question's author) accepts *answer*, replacing an earlier accepted one;
    *question* is locked. The answer's author gets an inbox item. Nothing when already so."""
    if question.accepted_answer_id == answer.id:
        return
    _set_accepted(session, question, answer.id)
    question.last_activity_at = utcnow()
    await notify(
        session,
        recipient_id=answer.author_id,
        actor=asker,
        kind=InboxKind.ACCEPTED,
        text=question.title,
        question_id=question.id,
        answer_id=answer.id,
    )


def unaccept_answer(session: AsyncSession, question: Question, answer: Answer) -> None:
    """Withdraw the acceptance of *answer*; nothing when it is not the accepted one."""
    if question.accepted_answer_id == answer.id:
        _set_accepted(session, question, None)


def _set_accepted(session: AsyncSession, question: Question, answer_id: int | None) -> None:
    question.accepted_answer_id = answer_id
    question.edit_version += 1
    events.accepted_changed(session, question)
