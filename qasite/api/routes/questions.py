"""Questions: ask, read, edit and delete your own."""

from __future__ import annotations

from fastapi import APIRouter, status

from qasite.api.deps import Author, Ctx, OwnedQuestion, QuestionId, ReadSession, WriteTx
from qasite.api.errors import ERROR_RESPONSES, Invalid
from qasite.api.routes.names import with_names
from qasite.api.schemas import QuestionIn, QuestionOut, QuestionPatch
from qasite.domain import events
from qasite.domain.inbox import publish_unread, unread_holders
from qasite.domain.models import InboxItem, Question, utcnow
from qasite.domain.posts import (
    attachment_files,
    load_question,
    question_out,
    relock,
    tags_named,
    unique_tags,
)
from qasite.domain.rendering import render_markdown

router = APIRouter(prefix="/api/questions", tags=["questions"], responses=ERROR_RESPONSES)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=QuestionOut)
async def ask(body: QuestionIn, tx: WriteTx, user: Author) -> QuestionOut:
    """Ask a question; announced on ``questions:new`` and on each ``tag:<name>``."""
    names = unique_tags(body.tags)
    question = Question(
        author_id=user.id,
        title=body.title,
        body_md=body.body,
        body_html=render_markdown(body.body),
        tags=await tags_named(tx.session, names),
    )
    tx.session.add(question)
    await tx.session.flush()
    events.question_posted(tx.session, question, names, author_name=user.display_name)
    out = await with_names(tx.session, await question_out(tx.session, question))
    await tx.commit()
    return out


@router.get("/{question_id}", response_model=QuestionOut)
async def read(question_id: QuestionId, session: ReadSession) -> QuestionOut:
    """The question page: the question, its answers, comments and attachments."""
    return await with_names(
        session, await question_out(session, await load_question(session, question_id))
    )


@router.patch("/{question_id}", response_model=QuestionOut)
async def edit(body: QuestionPatch, question: OwnedQuestion, tx: WriteTx) -> QuestionOut:
    """Edit your question (title, body, tags); the new state goes to ``question:<id>``."""
    if body.title is None and body.body is None and body.tags is None:
        raise Invalid("nothing to change: give a title, a body or tags")
    await relock(tx.session, question)
    await tx.session.refresh(question, ["tags"])
    if body.title is not None:
        question.title = body.title
    if body.body is not None:
        question.body_md = body.body
        question.body_html = render_markdown(body.body)
    if body.tags is not None:
        question.tags = await tags_named(tx.session, unique_tags(body.tags))
    question.edit_version += 1
    question.updated_at = question.last_activity_at = utcnow()
    await tx.session.flush()
    events.post_edited(tx.session, question.id, question)
    out = await with_names(tx.session, await question_out(tx.session, question))
    await tx.commit()
    return out


@router.delete("/{question_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(question: OwnedQuestion, tx: WriteTx, context: Ctx) -> None:
    """Delete your question with its answers, comments, votes and attachments."""
    question_id = question.id
    files = await attachment_files(tx.session, question)
    holders = await unread_holders(tx.session, InboxItem.question_id == question_id)
    await tx.session.delete(question)
    events.deleted(tx.session, question_id, f"question:{question_id}")
    await publish_unread(tx.session, holders)
    await tx.commit()
    await context.images.delete_all(files)
