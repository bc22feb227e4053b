"""Account recovery in the pages (issue 13, item 5), in Chromium against the real system:
a forgotten password reset from the login page, a verification link sent again, errors in
words. The mail is read from the development mailbox link the pages show in development."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from tests.e2e.conftest import PASSWORD, VIEWPORT
from tests.e2e.system import LiveSystem

expect.set_options(timeout=20_000)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    yield context
    context.close()


def test_a_forgotten_password_is_reset_from_the_login_page_and_the_new_one_logs_in(
    shared_system: LiveSystem, context: BrowserContext
) -> None:
    qa = shared_system.qa
    qa.verified_user("robin@example.com", PASSWORD, "Robin")
    page = context.new_page()
    page.goto(f"{qa.url}/login")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("robin@example.com")
    page.get_by_role("button", name="Send the reset link").click()
    expect(page.locator("#forgot-status")).to_contain_text("is on its way")
    page.locator("#dev-reset-link").click()
    page.get_by_label("New password").fill("short")
    page.get_by_role("button", name="Set the new password").click()  # the browser's own check
    expect(page.locator("#reset-form-error")).to_be_empty()
    page.get_by_label("New password").fill("a much better passphrase")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.locator("#reset-status")).to_contain_text("Your password is changed")
    reset_url = page.url
    page.locator("#reset-login").click()
    page.get_by_label("Email").fill("robin@example.com")
    page.get_by_label("Password").fill("a much better passphrase")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#user-name")).to_have_text("Robin")
    # The link was used: opened again, it says so in words.
    page.goto(reset_url)
    page.get_by_label("New password").fill("yet another passphrase")
    page.get_by_role("button", name="Set the new password").click()
    expect(page.locator("#reset-form-error")).to_have_text(
        "This reset link is used or expired. Ask for a new one on the “Forgot your password?” page."
    )


def test_a_verification_link_is_sent_again_from_the_verify_page_and_verifies(
    shared_system: LiveSystem, context: BrowserContext
) -> None:
    qa = shared_system.qa
    qa.call("POST", "/api/auth/register", json={"email": "sam@example.com", "password": PASSWORD})
    page = context.new_page()
    page.goto(f"{qa.url}/verify?email=sam%40example.com")
    expect(page.get_by_label("No mail? Send the link again to")).to_have_value("sam@example.com")
    page.get_by_role("button", name="Send the link again").click()
    expect(page.locator("#verify-status")).to_contain_text("a new link is on its way")
    page.locator("#dev-verify-link").click()
    expect(page.locator("#verify-status")).to_contain_text("Your email address is verified")


def test_asking_too_often_is_refused_in_words(
    shared_system: LiveSystem, context: BrowserContext
) -> None:
    qa = shared_system.qa
    for _ in range(10):  # auth_account_attempts
        qa.call("POST", "/api/auth/password/forgot", json={"email": "lou@example.com"})
    page = context.new_page()
    page.goto(f"{qa.url}/forgot")
    page.get_by_label("Email").fill("lou@example.com")
    page.get_by_role("button", name="Send the reset link").click()
    expect(page.locator("#forgot-form-error")).to_contain_text("too many attempts")
    assert "^" not in page.locator("#forgot-form-error").inner_text()
