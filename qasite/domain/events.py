"""What the Q&A core publishes: payloads that carry state, not deltas (docs/qa-core.md#events).

Every payload has a ``type``. Scores travel as the absolute score with its ``version`` (the
post's ``score_version``), edits with the post's ``edit_version``, unread counts as the count
itself, so a repeated or reordered event is harmless: a client keeps the highest version.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from qasite.domain.models import Answer, Comment, InboxItem, Question
from qasite.domain.names import display_name
from qasite.domain.outbox import emit

MAX_EVENT_HTML = 32 * 1024
"""Bodies longer than this are left out of events (``body_html`` null): the client fetches
the post over HTTP. Keeps every payload well under the bus's 64 KiB."""


def question_channel(question_id: int) -> str:
    return f"question:{question_id}"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def post_ref(post: Question | Answer) -> str:
    return f"{'question' if isinstance(post, Question) else 'answer'}:{post.id}"


def _html(html: str) -> str | None:
    return html if len(html) <= MAX_EVENT_HTML else None


def score_changed(
    session: AsyncSession, question_id: int, post: str, score: int, version: int
) -> None:
    """*post* is ``question:<id>`` or ``answer:<id>``."""
    emit(
        session,
        question_channel(question_id),
        {
            "type": "score",
            "question": question_id,
            "post": post,
            "score": score,
            "version": version,
        },
    )


def answer_posted(
    session: AsyncSession, answer: Answer, answer_count: int, *, author_name: str
) -> None:
    """*author_name*: the author's display name (the route has the user at hand)."""
    emit(
        session,
        question_channel(answer.question_id),
        {
            "type": "answer",
            "question": answer.question_id,
            "answer": {
                "id": answer.id,
                "author": answer.author_id,
                "author_name": display_name(author_name),
                "body_html": _html(answer.body_html),
                "created_at": answer.created_at.isoformat(),
            },
            "answer_count": answer_count,
        },
    )


def comment_posted(
    session: AsyncSession, question_id: int, comment: Comment, *, author_name: str
) -> None:
    emit(
        session,
        question_channel(question_id),
        {
            "type": "comment",
            "question": question_id,
            "post": f"question:{comment.question_id}"
            if comment.question_id is not None
            else f"answer:{comment.answer_id}",
            "comment": {
                "id": comment.id,
                "author": comment.author_id,
                "author_name": display_name(author_name),
                "body": comment.body,
                "version": comment.edit_version,
                "created_at": comment.created_at.isoformat(),
            },
        },
    )


def post_edited(session: AsyncSession, question_id: int, post: Question | Answer) -> None:
    data: dict[str, Any] = {
        "type": "edit",
        "question": question_id,
        "post": post_ref(post),
        "version": post.edit_version,
        "body_html": _html(post.body_html),
    }
    if isinstance(post, Question):
        data["title"] = post.title
        data["tags"] = [tag.name for tag in post.tags]
    emit(session, question_channel(question_id), data)


def comment_edited(session: AsyncSession, question_id: int, comment: Comment) -> None:
    emit(
        session,
        question_channel(question_id),
        {
            "type": "comment_edit",
            "question": question_id,
            "comment": {"id": comment.id, "body": comment.body, "version": comment.edit_version},
        },
    )


def deleted(
    session: AsyncSession, question_id: int, ref: str, *, answer_count: int | None = None
) -> None:
    """*ref* is ``question:<id>``, ``answer:<id>`` (with the new *answer_count*) or
    ``comment:<id>``."""
    data: dict[str, Any] = {"type": "deleted", "question": question_id, "post": ref}
    if answer_count is not None:
        data["answer_count"] = answer_count
    emit(session, question_channel(question_id), data)


def accepted_changed(session: AsyncSession, question: Question) -> None:
    emit(
        session,
        question_channel(question.id),
        {
            "type": "accepted",
            "question": question.id,
            "answer": question.accepted_answer_id,
            "version": question.edit_version,
        },
    )


def question_posted(
    session: AsyncSession, question: Question, tags: list[str], *, author_name: str
) -> None:
    """To ``questions:new`` and to each tag's feed."""
    data = {
        "type": "question",
        "id": question.id,
        "title": question.title,
        "tags": tags,
        "author": question.author_id,
        "author_name": display_name(author_name),
        "created_at": question.created_at.isoformat(),
    }
    emit(session, "questions:new", data)
    for tag in tags:
        emit(session, f"tag:{tag}", data)


def inbox_item_added(
    session: AsyncSession, item: InboxItem, unread: int, *, actor_name: str | None
) -> None:
    emit(
        session,
        user_channel(item.user_id),
        {
            "type": "inbox",
            "item": {
                "id": item.id,
                "kind": item.kind,
                "question": item.question_id,
                "answer": item.answer_id,
                "comment": item.comment_id,
                "excerpt": item.excerpt,
                "created_at": item.created_at.isoformat(),
                "actor_name": display_name(actor_name),
            },
            "unread": unread,
        },
    )


def unread_changed(session: AsyncSession, user_id: int, unread: int) -> None:
    emit(session, user_channel(user_id), {"type": "unread", "unread": unread})
