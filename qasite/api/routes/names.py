"""Not a router: the authors' display names for the routes' outputs.

:mod:`qasite.domain.posts` builds the outputs with author ids; :func:`with_names` fills in every
``author_name`` of one response with a single ``IN`` query, however many posts it holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from qasite.api.schemas import AnswerOut, CommentOut, QuestionOut, display_name
from qasite.domain.models import User

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


async def names_of(session: AsyncSession, user_ids: Iterable[int]) -> dict[int, str]:
    """The display names of *user_ids* (one query; none for an empty set)."""
    wanted = set(user_ids)
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.display_name).where(User.id.in_(wanted)))
    return {user_id: display_name(name) for user_id, name in rows}


async def with_names(session: AsyncSession, out: T) -> T:
    """*out* with ``author_name`` set on it and on every post under it."""
    posts = list(_posts([out]))
    names = await names_of(session, (post.author_id for post in posts))
    for post in posts:
        post.author_name = display_name(names.get(post.author_id))
    return out
