"""Account recovery (issue 13, item 5): qasite/api/routes/account.py, read through the
development mailbox as a user reads their mail; and errors in words (qasite/api/errors.py)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt

from qasite.api.routes.account import RESET_TTL_S
from qasite.core.tokens import issue_access_token
from tests.qasite.support import QA, error_of

PASSWORD = "correct horse battery"
NEW_PASSWORD = "a brand new passphrase"


async def mails_to(qa: QA, email: str) -> list[dict[str, Any]]:
    """The mails to *email*, newest first (as the mailbox lists them)."""
    mails: list[dict[str, Any]] = (await qa.client.get("/dev/mailbox")).json()
    return [m for m in mails if m["to"] == email]


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def forgot(qa: QA, email: str) -> str:
    """Ask for a reset of *email*'s password; the token of the link mailed."""
    r = await qa.client.post("/api/auth/password/forgot", json={"email": email})
    assert r.status_code == 202, r.text
    link = (await mails_to(qa, email))[0]["link"]
    assert urlsplit(link).path == "/reset"
    return token_of(link)


async def login_status(qa: QA, email: str, password: str) -> int:
    r = await qa.client.post("/api/auth/login", json={"email": email, "password": password})
    return r.status_code


async def reset(qa: QA, token: str, password: str = NEW_PASSWORD) -> Any:
    return await qa.client.post(
        "/api/auth/password/reset", json={"token": token, "password": password}
    )


async def test_a_forgotten_password_is_reset_from_the_mailed_link_and_old_sessions_end(
    qa: QA,
) -> None:
    user = await qa.signup()
    token = await forgot(qa, user.email)
    assert (await reset(qa, token)).status_code == 204
    assert await login_status(qa, user.email, NEW_PASSWORD) == 200
    assert await login_status(qa, user.email, PASSWORD) == 401
    refreshed = await qa.client.post(
        "/api/auth/refresh", json={"refresh_token": user.tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


async def test_a_reset_link_works_once(qa: QA) -> None:
    user = await qa.signup()
    token = await forgot(qa, user.email)
    assert (await reset(qa, token)).status_code == 204
    again = await reset(qa, token, "yet another passphrase")
    assert again.status_code == 404
    assert "ask for a new one" in error_of(again)["message"]
    assert await login_status(qa, user.email, NEW_PASSWORD) == 200


async def test_an_older_reset_link_dies_when_a_newer_one_is_used(qa: QA) -> None:
    user = await qa.signup()
    first = await forgot(qa, user.email)
    second = await forgot(qa, user.email)
    assert (await reset(qa, second)).status_code == 204
    assert (await reset(qa, first)).status_code == 404


async def test_an_expired_forged_or_access_token_does_not_reset_a_password(qa: QA) -> None:
    user = await qa.signup()
    settings = qa.context.settings
    secret = settings.access_token_secret
    assert secret is not None
    expired = jwt.encode(
        {"typ": "reset", "sub": str(user.id), "exp": int(time.time()) - 1, "pw": "x"},
        secret,
        "HS256",
    )
    forged = jwt.encode(
        {"typ": "reset", "sub": str(user.id), "exp": int(time.time() + RESET_TTL_S), "pw": "x"},
        "not the secret, but as long as one",
        "HS256",
    )
    access = issue_access_token(settings, user.id, time.time()).token
    for token in (expired, forged, access, "garbage"):
        r = await reset(qa, token)
        assert r.status_code == 404, token
        assert error_of(r)["message"].startswith("this reset link is unknown")
    assert await login_status(qa, user.email, PASSWORD) == 200


async def test_a_too_short_new_password_is_refused_in_words(qa: QA) -> None:
    user = await qa.signup()
    r = await reset(qa, await forgot(qa, user.email), "short")
    assert r.status_code == 422
    assert error_of(r)["message"] == "body.password: should have at least 8 characters"


async def test_asking_for_an_unknown_email_answers_the_same_and_mails_nobody(qa: QA) -> None:
    user = await qa.signup()
    known = await qa.client.post("/api/auth/password/forgot", json={"email": user.email})
    unknown = await qa.client.post(
        "/api/auth/password/forgot", json={"email": "nobody@example.org"}
    )
    assert (known.status_code, unknown.status_code) == (202, 202)
    assert known.json()["message"] == unknown.json()["message"]
    assert await mails_to(qa, "nobody@example.org") == []


async def test_reset_mails_are_limited_per_email_with_retry_after(qa: QA) -> None:
    user = await qa.signup()
    limit = qa.context.settings.auth_account_attempts
    statuses = [
        (await qa.client.post("/api/auth/password/forgot", json={"email": user.email})).status_code
        for _ in range(limit + 1)
    ]
    assert statuses == [202] * limit + [429]
    r = await qa.client.post("/api/auth/password/forgot", json={"email": user.email})
    assert int(r.headers["Retry-After"]) > 0
    assert "too many attempts" in error_of(r)["message"]
    assert len(await mails_to(qa, user.email)) == 1 + limit  # the verification link + resets


async def test_a_verification_mail_is_sent_again_and_its_link_verifies(qa: QA) -> None:
    user = await qa.signup(verified=False)
    r = await qa.client.post("/api/auth/verify/resend", json={"email": user.email})
    assert r.status_code == 202
    mails = await mails_to(qa, user.email)
    assert len(mails) == 2
    verified = await qa.client.post("/api/auth/verify", json={"token": token_of(mails[0]["link"])})
    assert verified.status_code == 200
    assert verified.json()["verified"] is True


async def test_no_verification_mail_for_a_verified_or_unknown_email(qa: QA) -> None:
    user = await qa.signup()
    for email in (user.email, "nobody@example.org"):
        r = await qa.client.post("/api/auth/verify/resend", json={"email": email})
        assert r.status_code == 202
    assert len(await mails_to(qa, user.email)) == 1
    assert await mails_to(qa, "nobody@example.org") == []


async def test_verification_mails_are_limited_per_email(qa: QA) -> None:
    user = await qa.signup(verified=False)
    limit = qa.context.settings.auth_account_attempts
    statuses = [
        (await qa.client.post("/api/auth/verify/resend", json={"email": user.email})).status_code
        for _ in range(limit + 1)
    ]
    assert statuses == [202] * limit + [429]


async def test_a_bad_email_is_refused_in_words(qa: QA) -> None:
    r = await qa.client.post("/api/auth/password/forgot", json={"email": "not an email"})
    assert r.status_code == 422
    assert "email address" in error_of(r)["message"]


async def test_a_bad_tag_is_explained_in_words_never_as_a_pattern(qa: QA) -> None:
    user = await qa.signup()
    r = await qa.client.post(
        "/api/questions",
        json={"title": "How do I read a file?", "body": "Details.", "tags": ["bad tag!"]},
        headers=user.headers,
    )
    assert r.status_code == 422
    error = error_of(r)
    assert "'bad tag!' is not a tag: a tag is 1 to 35 lowercase letters" in error["message"]
    assert "^" not in error["message"] and "pattern" not in error["message"]
    assert "^" not in str(error["problems"])
