"""Comments on questions and answers: post, edit and delete your own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from qasite.api.deps import AnswerId, Author, OwnedComment, QuestionId, WriteTx
from qasite.api.errors import ERROR_RESPONSES
from qasite.api.outputs import comment_out
from qasite.api.schemas import CommentIn, CommentOut
from qasite.domain import comments
from qasite.domain.posts import load_answer, load_question

router = APIRouter(prefix="/api", tags=["comments"], responses=ERROR_RESPONSES)

_POSTED: dict[str, Any] = {"status_code": status.HTTP_201_CREATED, "response_model": CommentOut}
"""How both comment routes answer a new comment: 201 with the comment."""


@router.post("/questions/{question_id}/comments", **_POSTED)
async def comment_on_question(
    question_id: QuestionId, body: CommentIn, tx: WriteTx, user: Author
) -> CommentOut:
    """Comment on a question; its author gets an inbox item."""
    question = await load_question(tx.session, question_id)
    comment = await comments.post_comment(tx.session, user, body.body, question, None)
    out = comment_out(comment, user)
    await tx.commit()
    return out


@router.post("/answers/{answer_id}/comments", **_POSTED)
async def comment_on_answer(
    answer_id: AnswerId, body: CommentIn, tx: WriteTx, user: Author
) -> CommentOut:
    """Comment on an answer; its author gets an inbox item."""
    answer = await load_answer(tx.session, answer_id)
    question = await load_question(tx.session, answer.question_id)
    comment = await comments.post_comment(tx.session, user, body.body, question, answer)
    out = comment_out(comment, user)
    await tx.commit()
    return out


@router.patch("/comments/{comment_id}", response_model=CommentOut)
async def edit_comment(
    body: CommentIn, comment: OwnedComment, tx: WriteTx, user: Author
) -> CommentOut:
    await comments.edit_comment(tx.session, comment, body.body)
    out = comment_out(comment, user)  # the owner is the one editing
    await tx.commit()
    return out


@router.delete("/comments/{comment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_comment(comment: OwnedComment, tx: WriteTx) -> None:
    await comments.delete_comment(tx.session, comment)
    await tx.commit()
