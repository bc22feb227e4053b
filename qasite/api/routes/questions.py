"""Questions: ask, read, edit and delete your own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Response, status
from fastapi.routing import APIRoute

from qasite.api.deps import (
    Author,
    Ctx,
    MarkdownRenderer,
    OptionalUserId,
    OwnedQuestion,
    QuestionId,
    WriteTx,
)
from qasite.api.errors import ERROR_RESPONSES
from qasite.api.outputs import question_out
from qasite.api.page import question_page
from qasite.api.schemas import QuestionIn, QuestionOut, QuestionPatch
from qasite.core.context import QAContext
from qasite.domain.questions import ask_question, delete_question, edit_question
from qasite.domain.rendering import Renderer


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Inside the application's lifespan, after the context is built: the Markdown renderer
    of every writer of posts (questions and answers) lives on ``app.state.renderer``."""
    context: QAContext = app.state.qa
    renderer = Renderer(context.settings.markdown_threads)
    app.state.renderer = renderer
    try:
        yield
    finally:
        renderer.close()


router = APIRouter(
    prefix="/api/questions", tags=["questions"], responses=ERROR_RESPONSES, lifespan=_lifespan
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=QuestionOut)
async def ask(
    body: QuestionIn, tx: WriteTx, user: Author, renderer: MarkdownRenderer
) -> QuestionOut:
    """Ask a question; announced on ``questions:new`` and on each ``tag:<name>``."""
    rendered = await renderer.render(body.body)
    question = await ask_question(tx.session, user, body.title, rendered, body.tags)
    out = await question_out(tx.session, question)
    await tx.commit()
    return out


@router.get("/{question_id}", response_model=QuestionOut)
async def read(question_id: QuestionId, context: Ctx, viewer_id: OptionalUserId) -> Response:
    """The question page: the question, its answers, comments and attachments; signed in,
    each post's ``my_vote`` is your vote on it. Served from the page cache while the page's
    versions are unchanged (never older than the last committed write)."""
    body = await question_page(context.db, context.pages, question_id, viewer_id)
    return Response(body, media_type="application/json")


PAGE_ROUTE = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is read)
"""The page's route: answered in front of the framework for anonymous views
(qasite/api/page_front.py)."""


@router.patch("/{question_id}", response_model=QuestionOut)
async def edit(
    body: QuestionPatch, question: OwnedQuestion, tx: WriteTx, renderer: MarkdownRenderer
) -> QuestionOut:
    """Edit your question (title, body, tags); the new state goes to ``question:<id>``."""
    rendered = None if body.body is None else await renderer.render(body.body)
    await edit_question(tx.session, question, title=body.title, body=rendered, tags=body.tags)
    out = await question_out(tx.session, question, viewer_id=question.author_id)
    await tx.commit()
    return out


@router.delete("/{question_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete(question: OwnedQuestion, tx: WriteTx, context: Ctx) -> None:
    """Delete your question with its answers, comments, votes and attachments."""
    files = await delete_question(tx.session, question)
    await tx.commit()
    await context.images.delete_all(files)
