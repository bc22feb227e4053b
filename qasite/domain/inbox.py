"""Inbox items: created in the transaction of the write that causes them, each with an event.

The event on ``user:<id>`` carries the item and the recipient's unread count as counted in
that transaction (state, not a delta). The item in the event has what the API's list gives
(the actor's name, the question's title, the plain-text excerpt), so a page shows an item
that arrives live as it shows a loaded one (issue 13, item 6).
"""

from __future__ import annotations

import enum

from markdown_it import MarkdownIt
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain import events
from qasite.domain.models import InboxItem, Question, User

EXCERPT_LENGTH = 200
EXCERPT_SOURCE_CHARS = 4000
"""Only the start of a post is read for its excerpt: bounded work whatever the post's size."""
_TEXT_TOKENS = frozenset({"text", "code_inline", "code_block", "fence", "softbreak", "hardbreak"})
_markdown = MarkdownIt("commonmark")


class InboxKind(enum.Enum):
    ANSWER = "answer"
    """Your question was answered."""
    COMMENT = "comment"
    """Your post got a comment."""
    ACCEPTED = "accepted"
    """Your answer was accepted."""


def plain_text(markdown: str) -> str:
    """The words of *markdown* without its markup (links keep their text, images their alt
    text, code its content): what an inbox excerpt shows."""
    words: list[str] = []
    for block in _markdown.parse(markdown[:EXCERPT_SOURCE_CHARS]):
        if block.type in ("code_block", "fence"):
            words.append(block.content)
        for token in block.children or ():
            if token.type in ("softbreak", "hardbreak"):
                words.append(" ")
            elif token.type in _TEXT_TOKENS or token.type == "image":
                words.append(token.content)
        words.append(" ")
    return "".join(words)


def excerpt(text: str) -> str:
    """The plain-text start of the Markdown *text*, on one line, at most
    :data:`EXCERPT_LENGTH` characters."""
    flat = " ".join(plain_text(text).split())
    return flat if len(flat) <= EXCERPT_LENGTH else flat[: EXCERPT_LENGTH - 1] + "\u2026"


async def unread_count(session: AsyncSession, user_id: int) -> int:
    query = select(func.count()).where(InboxItem.user_id == user_id, InboxItem.read_at.is_(None))
    return int(await session.scalar(query) or 0)


async def notify(
    session: AsyncSession,
    *,
    recipient_id: int,
    actor: User,
    kind: InboxKind,
    text: str,
    question_id: int,
    answer_id: int | None = None,
    comment_id: int | None = None,
) -> InboxItem | None:
    """Add an inbox item for *recipient_id* and its event; nothing when you act on your own post."""
    if recipient_id == actor.id:
        return None
    item = InboxItem(
        user_id=recipient_id,
        actor_id=actor.id,
        kind=kind.value,
        question_id=question_id,
        answer_id=answer_id,
        comment_id=comment_id,
        excerpt=excerpt(text),
    )
    session.add(item)
    await session.flush()
    unread = await unread_count(session, recipient_id)
    title = await session.scalar(select(Question.title).where(Question.id == question_id))
    events.inbox_item_added(
        session, item, unread, actor_name=actor.display_name, question_title=title
    )
    return item


async def unread_holders(session: AsyncSession, where: ColumnElement[bool]) -> list[int]:
    """The users with unread items matching *where* (their counts change if those go)."""
    query = select(InboxItem.user_id).where(where, InboxItem.read_at.is_(None)).distinct()
    return list((await session.scalars(query)).all())


async def publish_unread(session: AsyncSession, user_ids: list[int]) -> None:
    """After items were deleted with their post (ON DELETE CASCADE): each user's new count."""
    await session.flush()
    for user_id in sorted(user_ids):
        events.unread_changed(session, user_id, await unread_count(session, user_id))
