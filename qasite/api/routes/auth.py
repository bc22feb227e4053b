"""Accounts and sessions: register, verify the email, log in, refresh, log out, who am I."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import RedirectResponse
from sqlalchemy import select, update

from qasite.api.deps import Ctx, CurrentUserId, ReadSession, SettingsDep, WriteTx
from qasite.api.errors import ERROR_RESPONSES, Conflict, NotFound, Unauthenticated
from qasite.api.schemas import (
    LoginIn,
    OpaqueToken,
    RefreshIn,
    RegisterIn,
    TokensOut,
    UserOut,
    VerifyIn,
)
from qasite.core.mail import Mail
from qasite.core.settings import Settings
from qasite.core.tokens import issue_access_token, opaque_token, token_hash
from qasite.domain.models import EmailVerification, RefreshToken, User, utcnow

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERROR_RESPONSES)


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


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(body: RegisterIn, tx: WriteTx, context: Ctx) -> User:
    """Create an account and send the verification link (by SMTP, or to the dev mailbox)."""
    email = body.email.lower()
    if await tx.session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("an account with this email already exists")
    user = User(
        email=email,
        display_name=body.display_name or email.split("@", 1)[0][:64],
        password_hash=await context.passwords.hash(body.password),
        verified=False,
    )
    tx.session.add(user)
    await tx.session.flush()
    token = opaque_token()
    tx.session.add(
        EmailVerification(
            user_id=user.id,
            token_hash=token_hash(token),
            expires_at=_in(context.settings.verification_ttl_s),
        )
    )
    await tx.commit()
    link = f"{context.settings.public_base_url}/api/auth/verify?token={quote(token)}"
    await context.mailer.send(
        Mail(
            to=email,
            subject="Verify your email address",
            body=f"Open this link to verify your email address:\n\n{link}\n",
            link=link,
        )
    )
    return user


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


@router.post("/login", response_model=TokensOut)
async def login(body: LoginIn, tx: WriteTx, context: Ctx) -> TokensOut:
    """An access token (short-lived JWT) and a refresh token."""
    user = await tx.session.scalar(select(User).where(User.email == body.email.strip().lower()))
    if not await context.passwords.verify(user.password_hash if user else None, body.password):
        raise Unauthenticated("wrong email or password")
    assert user is not None
    tokens = await _issue_tokens(tx, context.settings, user.id)
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
async def logout(body: RefreshIn, tx: WriteTx) -> None:
    """Revoke the refresh token (the access token dies on its own within minutes)."""
    record = await _live_refresh(tx, body.refresh_token)
    record.revoked_at = utcnow()
    await tx.commit()


@router.get("/me", response_model=UserOut)
async def me(user_id: CurrentUserId, session: ReadSession) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise Unauthenticated("this account no longer exists")
    return user
