"""Accounts and sessions (qasite/api/routes/auth.py)."""

from __future__ import annotations

from tests.qasite.support import QA, error_of


async def test_registering_sends_a_verification_link_to_the_dev_mailbox(qa: QA) -> None:
    r = await qa.client.post(
        "/api/auth/register", json={"email": "Ada@Example.org", "password": "long enough"}
    )
    assert r.status_code == 202
    assert r.json()["email"] == "ada@example.org"
    assert "password" not in r.text
    assert "id" not in r.json()
    mail = (await qa.client.get("/dev/mailbox")).json()[0]
    assert mail["to"] == "ada@example.org"
    assert mail["link"].startswith("http://127.0.0.1:8080/api/auth/verify?token=")
    assert mail["link"] in mail["body"]


async def test_the_verification_link_verifies_the_email_once(qa: QA) -> None:
    await qa.client.post("/api/auth/register", json={"email": "a@b.org", "password": "long enough"})
    link = (await qa.client.get("/dev/mailbox")).json()[0]["link"]
    path = link.removeprefix("http://127.0.0.1:8080")
    first = await qa.client.get(path)
    assert first.status_code == 200
    assert first.json()["verified"] is True
    again = await qa.client.get(path)
    assert again.status_code == 404
    assert "used" in error_of(again)["message"]


async def test_a_browser_opening_the_link_is_sent_to_the_verify_page_with_the_token(
    qa: QA,
) -> None:
    await qa.client.post("/api/auth/register", json={"email": "a@b.org", "password": "long enough"})
    link = (await qa.client.get("/dev/mailbox")).json()[0]["link"]
    path = link.removeprefix("http://127.0.0.1:8080")
    token = path.split("token=", 1)[1]
    opened = await qa.client.get(path, headers={"Accept": "text/html,application/xhtml+xml"})
    assert opened.status_code == 303
    assert opened.headers["location"] == f"/verify?token={token}"
    # The page verifies it: the redirect did not use the token up.
    verified = await qa.client.post("/api/auth/verify", json={"token": token})
    assert verified.json()["verified"] is True


async def test_verification_by_post_with_an_unknown_token_is_404(qa: QA) -> None:
    r = await qa.client.post("/api/auth/verify", json={"token": "nope"})
    assert r.status_code == 404


async def test_registering_with_a_bad_email_or_short_password_is_422(qa: QA) -> None:
    for body in (
        {"email": "not an email", "password": "long enough"},
        {"email": "a@b.org", "password": "short"},
        {"email": "a@b.org"},
        {"email": "a@b.org", "password": "long enough", "admin": True},
    ):
        r = await qa.client.post("/api/auth/register", json=body)
        assert r.status_code == 422, body
        assert error_of(r)["reason"] == "invalid"


async def test_login_with_a_wrong_password_or_unknown_email_is_401(qa: QA) -> None:
    user = await qa.signup()
    for email, password in ((user.email, "wrong password"), ("nobody@example.org", "x")):
        r = await qa.client.post("/api/auth/login", json={"email": email, "password": password})
        assert r.status_code == 401
        assert error_of(r)["message"] == "wrong email or password"


async def test_login_gives_an_access_token_that_identifies_the_user(qa: QA) -> None:
    user = await qa.signup()
    r = await qa.client.get("/api/auth/me", headers=user.headers)
    assert r.status_code == 200
    assert r.json()["id"] == user.id
    assert user.tokens["token_type"] == "bearer"
    assert user.tokens["expires_at"] > 0


async def test_me_without_or_with_a_bad_token_is_401(qa: QA) -> None:
    assert (await qa.client.get("/api/auth/me")).status_code == 401
    r = await qa.client.get("/api/auth/me", headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"


async def test_refresh_rotates_the_refresh_token(qa: QA) -> None:
    user = await qa.signup()
    old = user.tokens["refresh_token"]
    r = await qa.client.post("/api/auth/refresh", json={"refresh_token": old})
    assert r.status_code == 200
    new = r.json()
    assert new["refresh_token"] != old
    me = await qa.client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {new['access_token']}"}
    )
    assert me.json()["id"] == user.id
    reused = await qa.client.post("/api/auth/refresh", json={"refresh_token": old})
    assert reused.status_code == 401


async def test_logout_revokes_the_refresh_token(qa: QA) -> None:
    user = await qa.signup()
    token = user.tokens["refresh_token"]
    assert (
        await qa.client.post("/api/auth/logout", json={"refresh_token": token})
    ).status_code == 204
    r = await qa.client.post("/api/auth/refresh", json={"refresh_token": token})
    assert r.status_code == 401
    again = await qa.client.post("/api/auth/logout", json={"refresh_token": token})
    assert again.status_code == 401


async def test_an_unverified_user_may_log_in_but_not_post(qa: QA) -> None:
    user = await qa.signup(verified=False)
    r = await qa.client.post(
        "/api/questions",
        json={"title": "Unverified question", "body": "b", "tags": ["x"]},
        headers=user.headers,
    )
    assert r.status_code == 403
    assert "verify" in error_of(r)["message"]


async def test_reusing_a_rotated_refresh_token_revokes_every_session_of_the_user(qa: QA) -> None:
    user = await qa.signup()
    stolen = user.tokens["refresh_token"]
    rotated = (await qa.client.post("/api/auth/refresh", json={"refresh_token": stolen})).json()
    other_login = (
        await qa.client.post(
            "/api/auth/login", json={"email": user.email, "password": "correct horse battery"}
        )
    ).json()
    assert (
        await qa.client.post("/api/auth/refresh", json={"refresh_token": stolen})
    ).status_code == 401
    for tokens in (rotated, other_login):
        r = await qa.client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert r.status_code == 401
