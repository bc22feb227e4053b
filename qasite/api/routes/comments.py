"""Comments on questions and answers: post, edit and delete your own."""

from __future__ import annotations

from fastapi import APIRouter, status

from qasite.api.deps import AnswerId, Author, OwnedComment, QuestionId, WriteTx
from qasite.api.errors import ERROR_RESPONSES
from qasite.api.schemas import CommentIn, CommentOut, display_name
from qasite.domain import events
from qasite.domain.inbox import InboxKind, notify, publish_unread, unread_holders
from qasite.domain.models import Comment, InboxItem, User, utcnow
from qasite.domain.posts import load_answer, load_question, relock

router = APIRouter(prefix="/api", tags=["comments"], responses=ERROR_RESPONSES)


def _out(comment: Comment, author: User) -> CommentOut:
    out = CommentOut.model_validate(comment)
    out.author_name = display_name(author.display_name)
    return out


async def _comment(
    tx: WriteTx,
    user: User,
    body: str,
    *,
    question_id: int,
    answer_id: int | None,
    post_author_id: int,
) -> CommentOut:
    comment = Comment(
        author_id=user.id,
        question_id=None if answer_id is not None else question_id,
        answer_id=answer_id,
        body=body,
    )
    tx.session.add(comment)
    await tx.session.flush()
    events.comment_posted(tx.session, question_id, comment, author_name=user.display_name)
    await notify(
        tx.session,
        recipient_id=post_author_id,
        actor_id=user.id,
        actor_name=user.display_name,
        kind=InboxKind.COMMENT,
        text=body,
        question_id=question_id,
        answer_id=answer_id,
        comment_id=comment.id,
    )
    out = _out(comment, user)
    await tx.commit()
    return out


@router.post(
    "/questions/{question_id}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=CommentOut,
)
async def comment_on_question(
    question_id: QuestionId, body: CommentIn, tx: WriteTx, user: Author
) -> CommentOut:
    """Comment on a question; its author gets an inbox item."""
    question = await load_question(tx.session, question_id)
    question.last_activity_at = utcnow()
    return await _comment(
        tx,
        user,
        body.body,
        question_id=question.id,
        answer_id=None,
        post_author_id=question.author_id,
    )


@router.post(
    "/answers/{answer_id}/comments",
    status_code=status.HTTP_201_CREATED,
    response_model=CommentOut,
)
async def comment_on_answer(
    answer_id: AnswerId, body: CommentIn, tx: WriteTx, user: Author
) -> CommentOut:
    """Comment on an answer; its author gets an inbox item."""
    answer = await load_answer(tx.session, answer_id)
    question = await load_question(tx.session, answer.question_id)
    question.last_activity_at = utcnow()
    return await _comment(
        tx,
        user,
        body.body,
        question_id=answer.question_id,
        answer_id=answer.id,
        post_author_id=answer.author_id,
    )


async def _question_of(tx: WriteTx, comment: Comment) -> int:
    if comment.question_id is not None:
        return comment.question_id
    assert comment.answer_id is not None
    return (await load_answer(tx.session, comment.answer_id)).question_id


@router.patch("/comments/{comment_id}", response_model=CommentOut)
async def edit_comment(
    body: CommentIn, comment: OwnedComment, tx: WriteTx, user: Author
) -> CommentOut:
    await relock(tx.session, comment)
    comment.body = body.body
    comment.edit_version += 1
    comment.updated_at = utcnow()
    await tx.session.flush()
    events.comment_edited(tx.session, await _question_of(tx, comment), comment)
    out = _out(comment, user)  # the owner is the one editing
    await tx.commit()
    return out


@router.delete("/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_comment(comment: OwnedComment, tx: WriteTx) -> None:
    question_id = await _question_of(tx, comment)
    holders = await unread_holders(tx.session, InboxItem.comment_id == comment.id)
    events.deleted(tx.session, question_id, f"comment:{comment.id}")
    await tx.session.delete(comment)
    await publish_unread(tx.session, holders)
    await tx.commit()
