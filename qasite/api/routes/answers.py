"""Answers: post, edit and delete your own; the question's owner accepts one."""

from __future__ import annotations

from fastapi import APIRouter, status
from sqlalchemy import update

from qasite.api.deps import AnswerId, Author, Ctx, OwnedAnswer, QuestionId, WriteTx
from qasite.api.errors import ERROR_RESPONSES, Forbidden
from qasite.api.routes.names import with_names
from qasite.api.schemas import AnswerIn, AnswerOut, QuestionOut, display_name
from qasite.domain import events
from qasite.domain.inbox import InboxKind, notify, publish_unread, unread_holders
from qasite.domain.models import Answer, InboxItem, Question, utcnow
from qasite.domain.posts import (
    answer_out,
    attachment_files,
    load_answer,
    load_question,
    question_out,
    relock,
)
from qasite.domain.rendering import render_markdown

router = APIRouter(prefix="/api", tags=["answers"], responses=ERROR_RESPONSES)


@router.post(
    "/questions/{question_id}/answers",
    status_code=status.HTTP_201_CREATED,
    response_model=AnswerOut,
)
async def post_answer(
    question_id: QuestionId, body: AnswerIn, tx: WriteTx, user: Author
) -> AnswerOut:
    """Answer a question; the asker gets an inbox item."""
    question = await load_question(tx.session, question_id)
    answer = Answer(
        question_id=question.id,
        author_id=user.id,
        body_md=body.body,
        body_html=render_markdown(body.body),
    )
    tx.session.add(answer)
    await tx.session.flush()
    count = (
        await tx.session.execute(
            update(Question)
            .where(Question.id == question.id)
            .values(answer_count=Question.answer_count + 1, last_activity_at=utcnow())
            .returning(Question.answer_count)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    events.answer_posted(tx.session, answer, count, author_name=user.display_name)
    await notify(
        tx.session,
        recipient_id=question.author_id,
        actor_id=user.id,
        actor_name=user.display_name,
        kind=InboxKind.ANSWER,
        text=body.body,
        question_id=question.id,
        answer_id=answer.id,
    )
    out = answer_out(answer, question.accepted_answer_id)
    out.author_name = display_name(user.display_name)
    await tx.commit()
    return out


@router.patch("/answers/{answer_id}", response_model=AnswerOut)
async def edit_answer(body: AnswerIn, answer: OwnedAnswer, tx: WriteTx, user: Author) -> AnswerOut:
    question = await load_question(tx.session, answer.question_id, lock=True)
    await relock(tx.session, answer)
    answer.body_md = body.body
    answer.body_html = render_markdown(body.body)
    answer.edit_version += 1
    answer.updated_at = utcnow()
    question.last_activity_at = answer.updated_at
    await tx.session.flush()
    events.post_edited(tx.session, answer.question_id, answer)
    out = answer_out(answer, question.accepted_answer_id)
    out.author_name = display_name(user.display_name)  # the owner is the one editing
    await tx.commit()
    return out


@router.delete("/answers/{answer_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_answer(answer: OwnedAnswer, tx: WriteTx, context: Ctx) -> None:
    question = await load_question(tx.session, answer.question_id, lock=True)
    files = await attachment_files(tx.session, answer)
    holders = await unread_holders(tx.session, InboxItem.answer_id == answer.id)
    if question.accepted_answer_id == answer.id:
        question.accepted_answer_id = None
        question.edit_version += 1
        events.accepted_changed(tx.session, question)
    await tx.session.delete(answer)
    count = (
        await tx.session.execute(
            update(Question)
            .where(Question.id == question.id)
            .values(answer_count=Question.answer_count - 1)
            .returning(Question.answer_count)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    events.deleted(tx.session, question.id, f"answer:{answer.id}", answer_count=count)
    await publish_unread(tx.session, holders)
    await tx.commit()
    await context.images.delete_all(files)


async def _question_of_owner(tx: WriteTx, user_id: int, answer_id: int) -> tuple[Question, Answer]:
    answer = await load_answer(tx.session, answer_id)
    question = await load_question(tx.session, answer.question_id, lock=True)
    if question.author_id != user_id:
        raise Forbidden("only the question's author can accept an answer")
    return question, answer


@router.post("/answers/{answer_id}/accept", response_model=QuestionOut)
async def accept(answer_id: AnswerId, tx: WriteTx, user: Author) -> QuestionOut:
    """Accept this answer (the question's author only); replaces an earlier accepted one."""
    question, answer = await _question_of_owner(tx, user.id, answer_id)
    if question.accepted_answer_id != answer.id:
        question.accepted_answer_id = answer.id
        question.edit_version += 1
        question.last_activity_at = utcnow()
        events.accepted_changed(tx.session, question)
        await notify(
            tx.session,
            recipient_id=answer.author_id,
            actor_id=user.id,
            actor_name=user.display_name,
            kind=InboxKind.ACCEPTED,
            text=question.title,
            question_id=question.id,
            answer_id=answer.id,
        )
    await tx.session.flush()
    out = await with_names(tx.session, await question_out(tx.session, question))
    await tx.commit()
    return out


@router.delete("/answers/{answer_id}/accept", response_model=QuestionOut)
async def unaccept(answer_id: AnswerId, tx: WriteTx, user: Author) -> QuestionOut:
    """Withdraw the acceptance of this answer (the question's author only)."""
    question, answer = await _question_of_owner(tx, user.id, answer_id)
    if question.accepted_answer_id == answer.id:
        question.accepted_answer_id = None
        question.edit_version += 1
        events.accepted_changed(tx.session, question)
    await tx.session.flush()
    out = await with_names(tx.session, await question_out(tx.session, question))
    await tx.commit()
    return out
