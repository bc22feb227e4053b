"""Writing questions: ask, edit, delete.

Each function writes in the caller's transaction (rows and the events they cause) and leaves
the commit to the caller. Ownership is checked before these are called.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain import events
from qasite.domain.errors import InvalidInput
from qasite.domain.inbox import publish_unread, unread_holders
from qasite.domain.models import InboxItem, Question, User, utcnow
from qasite.domain.posts import attachment_files, relock, tags_named, unique_tags
from qasite.domain.rendering import Rendered


async def ask_question(
    session: AsyncSession, author: User, title: str, body: Rendered, tags: Sequence[str]
) -> Question:
    """Add *author*'s question; announced on ``questions:new`` and on each ``tag:<name>``."""
    names = unique_tags(tags)
    now = utcnow()  # one time for all three: updated_at moves on an edit only
    question = Question(
        created_at=now,
        updated_at=now,
        last_activity_at=now,
        author_id=author.id,
        title=title,
        body_md=body.markdown,
        body_html=body.html,
        tags=await tags_named(session, names),
    )
    session.add(question)
    await session.flush()
    events.question_posted(session, question, names, author_name=author.display_name)
    return question


async def edit_question(
    session: AsyncSession,
    question: Question,
    *,
    title: str | None,
    body: Rendered | None,
    tags: Sequence[str] | None,
) -> None:
    """Change what is given (None: unchanged); :class:`InvalidInput` when nothing is."""
    if title is None and body is None and tags is None:
        raise InvalidInput(None, "nothing to change: give a title, a body or tags")
    await relock(session, question)
    await session.refresh(question, ["tags"])
    if title is not None:
        question.title = title
    if body is not None:
        question.body_md, question.body_html = body.markdown, body.html
    if tags is not None:
        question.tags = await tags_named(session, unique_tags(tags))
    question.edit_version += 1
    question.updated_at = question.last_activity_at = utcnow()
    await session.flush()
    events.post_edited(session, question.id, question)


async def delete_question(session: AsyncSession, question: Question) -> list[str]:
    """Delete *question* with its answers, comments, votes and inbox items. Returns the stored
    names of its (and its answers') attachments' files, to delete after the commit."""
    question_id = question.id
    files = await attachment_files(session, question)
    holders = await unread_holders(session, InboxItem.question_id == question_id)
    await session.delete(question)
    events.deleted(session, question_id, f"question:{question_id}")
    await publish_unread(session, holders)
    return files
