"""Dependencies shared by the routers, as ``Annotated`` aliases.

* :data:`Ctx`, :data:`SettingsDep`: the service's context and settings.
* :data:`ReadSession`: a session for reads (:data:`AutocommitReadSession`: one without a
  transaction). :data:`WriteTx`: a write transaction the route commits with
  :meth:`Tx.commit` (which also wakes the outbox relay).
* :data:`CurrentUserId` (401 without a valid access token, or with one revoked at logout:
  :mod:`qasite.core.revocation`), :data:`OptionalUserId`, :data:`Bearer` (the raw token),
  :data:`Author` (the user row, 403 until the email is verified).
* :func:`get_owned`: the one ownership check: 404 when missing, 403 when not yours.
* :data:`MarkdownRenderer`: renders post bodies off the event loop (started with the
  questions router, qasite/api/routes/questions.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from herald_contract.channels import MAX_ID
from qasite.api.errors import Forbidden, NotFound, Unauthenticated
from qasite.core.context import QAContext
from qasite.core.metrics import QAMetrics
from qasite.core.revocation import DenyList
from qasite.core.settings import Settings
from qasite.core.tokens import BadToken, read_access_claims
from qasite.domain.models import Answer, Comment, Question, User
from qasite.domain.rendering import Renderer


async def get_context(request: Request) -> QAContext:
    # async: a plain def dependency runs in the thread pool, a hop that cost 7% of a question
    # page's CPU (bench/results/QA_HTTP.md)
    context: QAContext = request.app.state.qa
    return context


Ctx = Annotated[QAContext, Depends(get_context)]


async def get_settings(context: Ctx) -> Settings:
    return context.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_renderer(request: Request) -> Renderer:
    renderer: Renderer = request.app.state.renderer
    return renderer


MarkdownRenderer = Annotated[Renderer, Depends(get_renderer)]


async def read_session(context: Ctx) -> AsyncIterator[AsyncSession]:
    async with context.db.reads() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(read_session)]


async def autocommit_read_session(context: Ctx) -> AsyncIterator[AsyncSession]:
    async with context.db.autocommit_reads() as session:
        yield session


AutocommitReadSession = Annotated[AsyncSession, Depends(autocommit_read_session)]
"""A session for reads without a transaction on PostgreSQL (:attr:`Database.autocommit_reads`)."""


class Tx:
    """One write transaction per request; the route calls :meth:`commit`, else it rolls back."""

    def __init__(self, session: AsyncSession, nudge: Callable[[], None]) -> None:
        self.session = session
        self._nudge = nudge

    async def commit(self) -> None:
        await self.session.commit()
        self._nudge()


async def write_tx(context: Ctx) -> AsyncIterator[Tx]:
    async with context.db.writes() as session:
        yield Tx(session, context.nudge_relay)


WriteTx = Annotated[Tx, Depends(write_tx)]

_bearer = HTTPBearer(auto_error=False, description="an access token from POST /api/auth/login")


Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def optional_user_id(
    request: Request, settings: SettingsDep, credentials: Bearer
) -> int | None:
    if credentials is None:
        return None
    now = time.time()
    try:
        claims = read_access_claims(settings, credentials.credentials, now)
    except BadToken as exc:
        raise Unauthenticated(f"invalid access token ({exc.why}); log in or refresh") from None
    revoked: DenyList | None = getattr(request.app.state, "revoked", None)
    if (
        claims.token_id is not None
        and revoked is not None
        and await revoked.is_revoked(claims.token_id, now=now)
    ):
        metrics: QAMetrics = request.app.state.metrics
        metrics.access_tokens_refused.labels("revoked").inc()
        raise Unauthenticated("this access token was revoked at logout; log in again")
    return claims.user_id


OptionalUserId = Annotated[int | None, Depends(optional_user_id)]


def current_user_id(user_id: OptionalUserId) -> int:
    if user_id is None:
        raise Unauthenticated()
    return user_id


CurrentUserId = Annotated[int, Depends(current_user_id)]


async def author(user_id: CurrentUserId, tx: WriteTx, settings: SettingsDep) -> User:
    """The user making a write; 403 while their email is not verified (if required)."""
    user = await tx.session.get(User, user_id)
    if user is None:
        raise Unauthenticated("this account no longer exists")
    if settings.require_verified_email and not user.verified:
        raise Forbidden("verify your email address first (see the link we sent)")
    return user


Author = Annotated[User, Depends(author)]

QuestionId = Annotated[int, Path(ge=1, le=MAX_ID)]
AnswerId = Annotated[int, Path(ge=1, le=MAX_ID)]
CommentId = Annotated[int, Path(ge=1, le=MAX_ID)]
ItemId = Annotated[int, Path(ge=1, le=MAX_ID)]

Owned = TypeVar("Owned", Question, Answer, Comment)


async def get_owned(tx: Tx, user: User, model: type[Owned], item_id: int) -> Owned:
    """Load *model* ``item_id`` for writing: 404 if missing, 403 if not yours.

    Every edit and delete goes through it (via the ``Owned*`` aliases below), so the rule is
    written once. The row is not locked (its author never changes); routes that lock take
    the question's row first, so that concurrent writes lock in one order (no deadlock).
    """
    noun = model.__name__.lower()
    found = await tx.session.get(model, item_id)
    if found is None:
        raise NotFound(f"no {noun} {item_id}")
    if found.author_id != user.id:
        raise Forbidden(f"this {noun} is not yours")
    return found


async def _owned_question(question_id: QuestionId, tx: WriteTx, user: Author) -> Question:
    return await get_owned(tx, user, Question, question_id)


async def _owned_answer(answer_id: AnswerId, tx: WriteTx, user: Author) -> Answer:
    return await get_owned(tx, user, Answer, answer_id)


async def _owned_comment(comment_id: CommentId, tx: WriteTx, user: Author) -> Comment:
    return await get_owned(tx, user, Comment, comment_id)


OwnedQuestion = Annotated[Question, Depends(_owned_question)]
OwnedAnswer = Annotated[Answer, Depends(_owned_answer)]
OwnedComment = Annotated[Comment, Depends(_owned_comment)]
