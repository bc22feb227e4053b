"""Account recovery: a forgotten password reset by email, a verification mail sent again.

    POST /api/auth/password/forgot  {email}            202, mails a reset link if the account exists
    POST /api/auth/password/reset   {token, password}  204, the new password; every session ends
    POST /api/auth/verify/resend    {email}            202, mails a new link if still unverified

Both mails are limited as registrations are (:mod:`qasite.core.auth_limits`): per email and
per client address, 429 with ``Retry-After``; a new password counts against the address. The
two ``202`` answers are the same whether the email has an account or not, so they tell nobody
which emails are registered.

A reset token is not stored: it is an HS256 JWT signed with ``access_token_secret``
(``typ`` = ``reset``, the user id, an expiry :data:`RESET_TTL_S` ahead) that carries a
fingerprint of the password hash it replaces, so it stops working once the password changes:
one use, and a reset asked for before another reset is dead too (Django's password-reset
tokens work the same way). Setting the password revokes every refresh token of the account;
access tokens already issued run out within ``access_token_ttl_s``. Opening the link proves the
mailbox is the user's, so it also marks the email verified.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated
from urllib.parse import quote

import jwt
from fastapi import APIRouter, Request, status
from pydantic import EmailStr, Field
from sqlalchemy import select, update

from qasite.api.deps import Ctx, WriteTx
from qasite.api.errors import ERROR_RESPONSES, NotFound
from qasite.api.routes.auth import (
    LIMITED,
    Limits,
    _hashing,
    _in,
    _limited,
    client_address,
)
from qasite.api.schemas import Input, Password, RegisteredOut
from qasite.core.mail import Mail
from qasite.core.settings import Settings
from qasite.core.tokens import ACCESS_ALGORITHM, opaque_token, token_hash
from qasite.domain import models
from qasite.domain.models import EmailVerification, RefreshToken, User, utcnow

RESET_TTL_S = 3600
"""How long a password-reset link works."""

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=ERROR_RESPONSES)


class EmailIn(Input):
    email: Annotated[EmailStr, Field(max_length=models.MAX_EMAIL)]


class NewPasswordIn(Input):
    token: Annotated[str, Field(min_length=1, max_length=1000)]
    password: Password


def _fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def _secret(settings: Settings) -> str:
    if not settings.access_token_secret:
        raise RuntimeError("access_token_secret is not set: build settings with keys.with_secrets")
    return settings.access_token_secret


def reset_token(settings: Settings, user: User, now: float) -> str:
    """A password-reset token for *user*, good for :data:`RESET_TTL_S` and one use."""
    claims = {
        "typ": "reset",
        "sub": str(user.id),
        "exp": int(now + RESET_TTL_S),
        "pw": _fingerprint(user.password_hash),
    }
    return jwt.encode(claims, _secret(settings), ACCESS_ALGORITHM)


BAD_RESET = "this reset link is unknown, used or expired: ask for a new one"


def _reset_user_id(settings: Settings, token: str, now: float) -> tuple[int, str]:
    """The user id and password fingerprint *token* names; :class:`NotFound` if it is bad."""
    try:
        claims = jwt.decode(
            token,
            _secret(settings),
            algorithms=[ACCESS_ALGORITHM],
            options={"require": ["sub", "exp", "typ", "pw"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise NotFound(BAD_RESET) from None
    sub, exp, pw = claims.get("sub"), claims.get("exp"), claims.get("pw")
    if claims.get("typ") != "reset" or not isinstance(sub, str) or not sub.isdigit():
        raise NotFound(BAD_RESET)
    if not isinstance(exp, int | float) or exp <= now or not isinstance(pw, str):
        raise NotFound(BAD_RESET)
    return int(sub), pw


@router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RegisteredOut,
    responses=LIMITED,
)
async def forgot_password(
    body: EmailIn, context: Ctx, request: Request, limits: Limits
) -> RegisteredOut:
    """Mail a password-reset link (good for an hour, one use) when *email* has an account."""
    email = body.email.lower()
    await _limited(request, limits.before_mail("reset", email, client_address(request)))
    async with context.db.reads() as session:
        user = await session.scalar(select(User).where(User.email == email))
    if user is not None:
        token = reset_token(context.settings, user, time.time())
        link = f"{context.settings.public_base_url}/reset?token={quote(token)}"
        await context.mailer.send(
            Mail(
                to=email,
                subject="Reset your password",
                body=(
                    "Someone (perhaps you) asked to reset the password of this account. Open "
                    f"this link within an hour to choose a new one:\n\n{link}\n\nIf this was "
                    "not you, ignore this mail: your password stays as it is.\n"
                ),
                link=link,
            )
        )
    return RegisteredOut(email=email)


@router.post("/password/reset", status_code=status.HTTP_204_NO_CONTENT, responses=LIMITED)
async def reset_password(
    body: NewPasswordIn, tx: WriteTx, context: Ctx, request: Request, limits: Limits
) -> None:
    """Set a new password with the token of a reset link; every refresh token is revoked."""
    await _limited(request, limits.before_reset(client_address(request)))
    user_id, fingerprint = _reset_user_id(context.settings, body.token, time.time())
    password_hash = await _hashing(request, context.passwords.hash(body.password))
    user = await tx.session.get(User, user_id, with_for_update=True)
    if user is None or _fingerprint(user.password_hash) != fingerprint:
        raise NotFound(BAD_RESET)
    user.password_hash = password_hash
    user.verified = True
    await tx.session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await tx.commit()


@router.post(
    "/verify/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RegisteredOut,
    responses=LIMITED,
)
async def resend_verification(
    body: EmailIn, tx: WriteTx, context: Ctx, request: Request, limits: Limits
) -> RegisteredOut:
    """Mail a new verification link when *email* has an account that is not verified yet
    (earlier links keep working until they expire)."""
    email = body.email.lower()
    await _limited(request, limits.before_mail("resend", email, client_address(request)))
    user = await tx.session.scalar(select(User).where(User.email == email))
    if user is None or user.verified:
        return RegisteredOut(email=email)
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
    return RegisteredOut(email=email)
