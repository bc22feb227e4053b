"""What the Q&A core publishes: payloads that carry state, not deltas (docs/qa-core.md#events).

Every payload has a ``type``. Scores travel as the absolute score with its ``version`` (the
post's ``score_version``), edits with the post's ``edit_version``, unread counts as the count
itself, so a repeated or reordered event is harmless: a client keeps the highest version.

The bus takes at most 64 KiB of data per publication, counted as the UTF-8 bytes of the JSON
clients receive (:func:`herald_contract.envelope.pack_data`). Only a post's rendered body can
make an event that large (every other field is bounded by the API); an ``answer`` or ``edit``
event that would not fit goes out without it: ``body_html`` null and ``"reload": true``, and the
client fetches the post over HTTP. The write itself never fails for the size of its event.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from herald_contract.envelope import pack_data
from herald_contract.errors import InvalidPayload
from qasite.domain.models import Answer, Attachment, Comment, InboxItem, Question
from qasite.domain.names import display_name
from qasite.domain.outbox import emit

log = logging.getLogger(__name__)

RELOAD = "reload"
"""The key of a degraded event: ``"reload": true`` says the post is too big to travel in an
event (``body_html`` is null) and the client should fetch it over HTTP."""


def question_channel(question_id: int) -> str:
    return f"question:{question_id}"


def user_channel(user_id: int) -> str:
    return f"user:{user_id}"


def post_ref(post: Question | Answer) -> str:
    return f"{'question' if isinstance(post, Question) else 'answer'}:{post.id}"


def _fits(data: dict[str, Any]) -> bool:
    """Whether the bus takes *data* (at most 64 KiB as UTF-8 JSON)."""
    try:
        pack_data(data)
    except InvalidPayload:
        return False
    return True


def _without_body(data: dict[str, Any], body_of: dict[str, Any]) -> dict[str, Any]:
    """*data* if it fits; else *data* with ``body_of["body_html"]`` null and ``reload`` true
    (*body_of* is *data* or the object inside it that carries the body)."""
    if _fits(data):
        return data
    size = len(str(body_of["body_html"]).encode())
    body_of["body_html"] = None
    data[RELOAD] = True
    log.info(
        "%s event of question %s sent without its body (%d bytes of HTML): reload hint",
        data["type"],
        data["question"],
        size,
    )
    return data


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
    body: dict[str, Any] = {
        "id": answer.id,
        "author": answer.author_id,
        "author_name": display_name(author_name),
        "body_html": answer.body_html,
        "created_at": answer.created_at.isoformat(),
    }
    data = {
        "type": "answer",
        "question": answer.question_id,
        "answer": body,
        "answer_count": answer_count,
    }
    emit(session, question_channel(answer.question_id), _without_body(data, body))


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
        "body_html": post.body_html,
        "edited_at": post.updated_at.isoformat(),
    }
    if isinstance(post, Question):
        data["title"] = post.title
        data["tags"] = [tag.name for tag in post.tags]
    emit(session, question_channel(question_id), _without_body(data, data))


def comment_edited(session: AsyncSession, question_id: int, comment: Comment) -> None:
    emit(
        session,
        question_channel(question_id),
        {
            "type": "comment_edit",
            "question": question_id,
            "comment": {
                "id": comment.id,
                "body": comment.body,
                "version": comment.edit_version,
                "edited_at": comment.updated_at.isoformat(),
            },
        },
    )


def attachment_added(
    session: AsyncSession, question_id: int, attachment: Attachment, *, url: str
) -> None:
    """An image attached to ``question:<id>`` or ``answer:<id>`` (*url*: where it is served)."""
    post = (
        f"question:{attachment.question_id}"
        if attachment.question_id is not None
        else f"answer:{attachment.answer_id}"
    )
    emit(
        session,
        question_channel(question_id),
        {
            "type": "attachment",
            "question": question_id,
            "post": post,
            "attachment": {
                "id": attachment.id,
                "url": url,
                "content_type": attachment.content_type,
                "width": attachment.width,
                "height": attachment.height,
            },
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
    session: AsyncSession,
    item: InboxItem,
    unread: int,
    *,
    actor_name: str | None,
    question_title: str | None = None,
) -> None:
    """The item as ``GET /api/inbox`` lists it (actor name, question title, excerpt), in the
    event's own key names; small by construction (title and excerpt are bounded)."""
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
                "question_title": question_title,
            },
            "unread": unread,
        },
    )


def unread_changed(session: AsyncSession, user_id: int, unread: int) -> None:
    emit(session, user_channel(user_id), {"type": "unread", "unread": unread})
