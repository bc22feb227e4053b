"""Accounts and sessions: register, verify the email, log in, refresh, log out, who am I.

Logins and registrations are limited per account and per client address
(:mod:`qasite.core.auth_limits`: 429 with ``Retry-After``), and their password work waits for
one of ``argon2_max_concurrency`` hashing slots (:mod:`qasite.core.passwords`: 503 busy with
``Retry-After`` past ``argon2_queue_timeout_s``), so a flood of them cannot take the service's
CPU (issue 11, item 4). A registration answers the same, 202 with the email, whether the email
is new or taken; the owner of a taken one gets a mail saying so instead of a link.

The client address is the ASGI peer (``request.client``). Behind a proxy, uvicorn (``serve``
and embedded mode) replaces it with the ``X-Forwarded-For`` address when the peer is one of
``FORWARDED_ALLOW_IPS`` (uvicorn's variable, default ``127.0.0.1,::1``); docs/qa-core.md.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Query, Request, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from herald_contract.cluster_client import any_command_client
from qasite.api.deps import Bearer, Ctx, CurrentUserId, ReadSession, SettingsDep, WriteTx
from qasite.api.errors import (
    ERROR_RESPONSES,
    Busy,
    NotFound,
    TooManyAttempts,
    Unauthenticated,
)
from qasite.api.schemas import (
    LoginIn,
    OpaqueToken,
    RefreshIn,
    RegisteredOut,
    RegisterIn,
    TokensOut,
    UserOut,
    VerifyIn,
)
from qasite.core import auth_limits
from qasite.core.auth_limits import AuthLimits, address_key
from qasite.core.context import QAContext
from qasite.core.mail import Mail
from qasite.core.metrics import QAMetrics
from qasite.core.passwords import PasswordsBusy
from qasite.core.ratelimit import MemoryWindows, RedisWindows, Windows
from qasite.core.revocation import DenyList, deny_list_for
from qasite.core.settings import Settings
from qasite.core.tokens import (
    BadToken,
    issue_access_token,
    opaque_token,
    read_access_claims,
    token_hash,
)
from qasite.domain.models import EmailVerification, RefreshToken, User, utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")


def auth_limits_for(settings: Settings) -> AuthLimits:
    """The limits of *settings*: in Redis under the key prefix when ``redis_url`` is set
    (shared by every worker), else in this process."""
    windows: Windows = MemoryWindows()
    if settings.redis_url is not None:
        client = any_command_client(settings.redis_url, socket_timeout_s=settings.publish_timeout_s)
        windows = RedisWindows(client, f"{settings.key_prefix}:qa:limit:")
    return AuthLimits(
        windows,
        account_attempts=settings.auth_account_attempts,
        address_attempts=settings.auth_address_attempts,
        window_s=settings.auth_window_s,
    )


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the application's lifespan (FastAPI merges a router's), after the context
    is built: the limits live on ``app.state.auth_limits`` and the access tokens revoked at
    logout on ``app.state.revoked`` until shutdown."""
    context: QAContext = app.state.qa
    limits = auth_limits_for(context.settings)
    app.state.auth_limits = limits
    revoked = deny_list_for(context.settings)
    app.state.revoked = revoked
    try:
        yield
    finally:
        await revoked.aclose()
        await limits.aclose()
        context.passwords.close()


router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERROR_RESPONSES, lifespan=_lifespan)

LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many attempts for this account or address; see Retry-After"},
    503: {"description": "Password hashing is busy; see Retry-After"},
}


def get_auth_limits(request: Request) -> AuthLimits:
    limits: AuthLimits = request.app.state.auth_limits
    return limits


Limits = Annotated[AuthLimits, Depends(get_auth_limits)]


def client_address(request: Request) -> str:
    """The limits' key of the client: the ASGI peer (uvicorn's forwarded address, if trusted)."""
    return address_key(request.client.host if request.client is not None else None)


def _metrics(request: Request) -> QAMetrics:
    metrics: QAMetrics = request.app.state.metrics
    return metrics


async def _limited(request: Request, check: Awaitable[None]) -> None:
    """Await a limit *check*; over it, count the refusal and answer 429."""
    try:
        await check
    except auth_limits.TooManyAttempts as exc:
        _metrics(request).auth_refused.labels(f"{exc.scope}_limit").inc()
        raise TooManyAttempts(str(exc), exc.retry_after_s) from None


async def _hashing(request: Request, work: Awaitable[T]) -> T:
    """Await password *work*; when no hashing slot frees in time, count it and answer 503."""
    try:
        return await work
    except PasswordsBusy as exc:
        _metrics(request).auth_refused.labels("argon2_busy").inc()
        raise Busy(str(exc), int(exc.retry_after_s)) from None


def _in(seconds: float) -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=seconds)


async def _issue_tokens(tx: WriteTx, settings: Settings, user_id: int) -> TokensOut:
    refresh = opaque_token()
    expires = _in(settings.refresh_token_ttl_s)
    tx.session.add(
        RefreshToken(user_id=user_id, token_hash=token_hash(refresh), expires_at=expires)
    )
    access = issue_access_token(settings, user_id, time.time())
    return TokensOut(
        access_token=access.token,
        expires_at=access.expires_at,
        refresh_token=refresh,
        refresh_expires_at=expires.timestamp(),
    )


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RegisteredOut,
    responses=LIMITED,
)
async def register(
    body: RegisterIn, tx: WriteTx, context: Ctx, request: Request, limits: Limits
) -> RegisteredOut:
    """Create an account and mail its verification link (by SMTP, or to the dev mailbox).

    The answer is the same whether the email is new or taken, so it tells nobody which
    emails have accounts; the owner of a taken email is mailed that someone tried.
    """
    email = body.email.lower()
    await _limited(request, limits.before_register(email, client_address(request)))
    # Hashed either way, a taken email must not answer faster than a new one; and before
    # *tx* begins, so that no lock is held while the hash waits for its slot.
    password_hash = await _hashing(request, context.passwords.hash(body.password))
    link = await _create_account(tx, context, body, email, password_hash)
    if link is None:
        mail = Mail(
            to=email,
            subject="Someone tried to register with your email address",
            body=(
                "Someone (perhaps you) tried to create an account with this address, which "
                "already has one. Log in with it instead; if this was not you, ignore this "
                f"mail.\n\n{context.settings.public_base_url}/login\n"
            ),
        )
    else:
        mail = Mail(
            to=email,
            subject="Verify your email address",
            body=f"Open this link to verify your email address:\n\n{link}\n",
            link=link,
        )
    await context.mailer.send(mail)
    return RegisteredOut(email=email)


async def _create_account(
    tx: WriteTx, context: QAContext, body: RegisterIn, email: str, password_hash: str
) -> str | None:
    """Create the unverified user *email* and return its verification link; None when the
    email has an account already (also when a concurrent registration just created it)."""
    if await tx.session.scalar(select(User.id).where(User.email == email)) is not None:
        return None
    user = User(
        email=email,
        display_name=body.display_name or email.split("@", 1)[0][:64],
        password_hash=password_hash,
        verified=False,
    )
    tx.session.add(user)
    try:
        await tx.session.flush()
    except IntegrityError:
        await tx.session.rollback()
        return None
    token = opaque_token()
    tx.session.add(
        EmailVerification(
            user_id=user.id,
            token_hash=token_hash(token),
            expires_at=_in(context.settings.verification_ttl_s),
        )
    )
    await tx.commit()
    return f"{context.settings.public_base_url}/api/auth/verify?token={quote(token)}"


async def _verify(tx: WriteTx, token: str) -> User:
    record = await tx.session.scalar(
        select(EmailVerification).where(EmailVerification.token_hash == token_hash(token))
    )
    if record is None or record.used_at is not None or record.expires_at <= utcnow():
        raise NotFound("this verification link is unknown, used or expired")
    record.used_at = utcnow()
    user = await tx.session.get(User, record.user_id)
    if user is None:
        raise NotFound("this verification link is unknown, used or expired")
    user.verified = True
    await tx.commit()
    return user


@router.post("/verify", response_model=UserOut)
async def verify(body: VerifyIn, tx: WriteTx) -> User:
    """Mark the email verified with the token from the link."""
    return await _verify(tx, body.token)


@router.get(
    "/verify",
    response_model=UserOut,
    responses={303: {"description": "A browser: redirected to the /verify page"}},
)
async def verify_link(
    token: Annotated[OpaqueToken, Query()], request: Request, tx: WriteTx
) -> User | RedirectResponse:
    """The link in the verification mail (GET, so it works from a mail client).

    A browser (``Accept: text/html``) is sent to the ``/verify`` page with the token, which
    verifies it and says so in words; anything else gets the user as JSON.
    """
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(f"/verify?token={quote(token)}", status.HTTP_303_SEE_OTHER)
    return await _verify(tx, token)


@router.post("/login", response_model=TokensOut, responses=LIMITED)
async def login(
    body: LoginIn, tx: WriteTx, context: Ctx, request: Request, limits: Limits
) -> TokensOut:
    """An access token (short-lived JWT) and a refresh token."""
    email = body.email.strip().lower()
    await _limited(request, limits.before_login(email, client_address(request)))
    # A short read, closed before the password check: *tx* begins (on SQLite, BEGIN
    # IMMEDIATE takes the database's write lock) only once the password is right, so no
    # login holds a lock or a pooled connection while it waits for argon2.
    async with context.db.reads() as session:
        found = (
            await session.execute(select(User.id, User.password_hash).where(User.email == email))
        ).first()
    user_id, password_hash = (found.id, found.password_hash) if found else (None, None)
    if not await _hashing(request, context.passwords.verify(password_hash, body.password)):
        await limits.login_failed(email)
        raise Unauthenticated("wrong email or password")
    assert user_id is not None
    tokens = await _issue_tokens(tx, context.settings, user_id)
    await tx.commit()
    return tokens


async def _live_refresh(tx: WriteTx, token: str) -> RefreshToken:
    """The live refresh token *token*, else 401.

    A revoked token presented again is a sign that it leaked (rotation means a client never
    reuses one; RFC 9700 section 4.14.2): every refresh token of its user is revoked, so the
    thief's rotated token dies too and the user logs in again.
    """
    record = await tx.session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_hash(token)).with_for_update()
    )
    if record is not None and record.revoked_at is not None:
        await tx.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == record.user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        await tx.commit()
    if record is None or record.revoked_at is not None or record.expires_at <= utcnow():
        raise Unauthenticated("this refresh token is unknown, revoked or expired; log in again")
    return record


@router.post("/refresh", response_model=TokensOut)
async def refresh(body: RefreshIn, tx: WriteTx, settings: SettingsDep) -> TokensOut:
    """New tokens for a live refresh token; the old refresh token is revoked (rotation)."""
    record = await _live_refresh(tx, body.refresh_token)
    revoked = await tx.session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == record.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if revoked.rowcount != 1:  # type: ignore[attr-defined]
        raise Unauthenticated("this refresh token was just used; log in again")
    tokens = await _issue_tokens(tx, settings, record.user_id)
    await tx.commit()
    return tokens


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    body: RefreshIn, tx: WriteTx, settings: SettingsDep, bearer: Bearer, request: Request
) -> None:
    """Revoke the refresh token, and the access token sent in ``Authorization`` (if any, and
    valid): refused from now on by every worker, until it would have expired anyway."""
    record = await _live_refresh(tx, body.refresh_token)
    record.revoked_at = utcnow()
    await tx.commit()
    if bearer is None:
        return
    now = time.time()
    try:
        claims = read_access_claims(settings, bearer.credentials, now)
    except BadToken:
        return  # nothing to revoke: it is refused already
    if claims.token_id is not None:
        revoked: DenyList = request.app.state.revoked
        await revoked.revoke(claims.token_id, expires_at=claims.expires_at, now=now)


@router.get("/me", response_model=UserOut)
async def me(user_id: CurrentUserId, session: ReadSession) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise Unauthenticated("this account no longer exists")
    return user
