"""Answers: post, edit and delete your own; the question's owner accepts one."""

from __future__ import annotations

from fastapi import APIRouter, status

from qasite.api.deps import (
    AnswerId,
    Author,
    Ctx,
    MarkdownRenderer,
    OwnedAnswer,
    QuestionId,
    WriteTx,
)
from qasite.api.errors import ERROR_RESPONSES, Forbidden
from qasite.api.outputs import answer_out, question_out
from qasite.api.schemas import AnswerIn, AnswerOut, QuestionOut
from qasite.domain import answers
from qasite.domain.models import Answer, Question, User
from qasite.domain.posts import load_answer, load_question

router = APIRouter(prefix="/api", tags=["answers"], responses=ERROR_RESPONSES)


@router.post(
    "/questions/{question_id}/answers",
    status_code=status.HTTP_201_CREATED,
    response_model=AnswerOut,
)
async def post_answer(
    question_id: QuestionId, body: AnswerIn, tx: WriteTx, user: Author, renderer: MarkdownRenderer
) -> AnswerOut:
    """Answer a question; the asker gets an inbox item."""
    rendered = await renderer.render(body.body)
    question = await load_question(tx.session, question_id)
    answer = await answers.post_answer(tx.session, question, user, rendered)
    out = answer_out(answer, question.accepted_answer_id, author=user)
    await tx.commit()
    return out


@router.patch("/answers/{answer_id}", response_model=AnswerOut)
async def edit_answer(
    body: AnswerIn, answer: OwnedAnswer, tx: WriteTx, user: Author, renderer: MarkdownRenderer
) -> AnswerOut:
    rendered = await renderer.render(body.body)  # before the question's row is locked
    question = await load_question(tx.session, answer.question_id, lock=True)
    await answers.edit_answer(tx.session, question, answer, rendered)
    out = answer_out(answer, question.accepted_answer_id, author=user)  # the owner edits
    await tx.commit()
    return out


@router.delete("/answers/{answer_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_answer(answer: OwnedAnswer, tx: WriteTx, context: Ctx) -> None:
    question = await load_question(tx.session, answer.question_id, lock=True)
    files = await answers.delete_answer(tx.session, question, answer)
    await tx.commit()
    await context.images.delete_all(files)


async def _asked_by(tx: WriteTx, user: User, answer_id: int) -> tuple[Question, Answer]:
    """The answer and its question (locked); 403 unless *user* asked the question."""
    answer = await load_answer(tx.session, answer_id)
    question = await load_question(tx.session, answer.question_id, lock=True)
    if question.author_id != user.id:
        raise Forbidden("only the question's author can accept an answer")
    return question, answer


async def _page_after(tx: WriteTx, question: Question) -> QuestionOut:
    await tx.session.flush()
    out = await question_out(tx.session, question)
    await tx.commit()
    return out


@router.post("/answers/{answer_id}/accept", response_model=QuestionOut)
async def accept(answer_id: AnswerId, tx: WriteTx, user: Author) -> QuestionOut:
    """Accept this answer (the question's author only); replaces an earlier accepted one."""
    question, answer = await _asked_by(tx, user, answer_id)
    await answers.accept_answer(tx.session, question, answer, user)
    return await _page_after(tx, question)


@router.delete("/answers/{answer_id}/accept", response_model=QuestionOut)
async def unaccept(answer_id: AnswerId, tx: WriteTx, user: Author) -> QuestionOut:
    """Withdraw the acceptance of this answer (the question's author only)."""
    question, answer = await _asked_by(tx, user, answer_id)
    answers.unaccept_answer(tx.session, question, answer)
    return await _page_after(tx, question)
