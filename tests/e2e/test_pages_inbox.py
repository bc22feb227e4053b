"""The inbox in the pages (issue 13, item 6), in Chromium against the real system: an item
that arrives live reads exactly as the same item loaded over HTTP; viewing a question marks
its items read; the inbox page pages back through older items."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import VIEWPORT, log_in, make_user
from tests.e2e.system import LiveSystem, User

expect.set_options(timeout=20_000)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    yield context
    context.close()


def ask(system: LiveSystem, user: User, title: str) -> int:
    q = system.qa.call(
        "POST", "/api/questions", user.token, json={"title": title, "body": "Body.", "tags": ["x"]}
    )
    question_id: int = q["id"]
    return question_id


def answer(system: LiveSystem, user: User, question_id: int, body: str) -> None:
    system.qa.call("POST", f"/api/questions/{question_id}/answers", user.token, json={"body": body})


def entries(page: Page) -> list[str]:
    texts: list[str] = page.locator("#inbox-items .inbox-item").all_inner_texts()
    return texts


def wait_subscribed(page: Page, channel: str) -> None:
    page.wait_for_function(
        "(c) => window.herald?.stats.get(c)?.state === 'subscribed'"
        " && window.herald.stats.get(c).loads > 0",
        arg=channel,
    )


def test_a_live_item_reads_as_the_loaded_one_and_viewing_its_question_reads_it(
    shared_system: LiveSystem, context: BrowserContext
) -> None:
    asker, answerer = make_user(shared_system, "Quinn"), make_user(shared_system, "Rene")
    question = ask(shared_system, asker, "Why is my inbox item plain?")
    page = context.new_page()
    log_in(page, shared_system, asker, "/inbox")
    wait_subscribed(page, f"user:{asker.id}")
    answer(shared_system, answerer, question, "Use **bold** and [a link](https://example.org)")
    item = page.locator("#inbox-items .inbox-item").first
    expect(item).to_contain_text("from Rene")
    live = entries(page)
    assert "on “Why is my inbox item plain?”" in live[0]
    assert "Use bold and a link" in live[0] and "**" not in live[0]
    page.reload()
    expect(page.locator("#inbox-items .inbox-item").first).to_contain_text("from Rene")
    assert entries(page)[0] == live[0]
    expect(page.locator("#inbox-unread")).to_have_text("1")
    # Viewing the question marks its item read, here and in every tab of the user.
    other = context.new_page()
    other.goto(f"{shared_system.qa.url}/questions/{question}")
    expect(other.locator("#inbox-unread")).to_have_text("0")
    expect(page.locator("#inbox-unread")).to_have_text("0")
    expect(page.locator("#inbox-summary")).to_have_text("0 unread items.")


def test_the_inbox_page_shows_older_items_on_request_with_the_keyboard(
    shared_system: LiveSystem, context: BrowserContext
) -> None:
    asker, answerer = make_user(shared_system, "Sasha"), make_user(shared_system, "Toni")
    question = ask(shared_system, asker, "A question with many answers")
    for i in range(23):
        answer(shared_system, answerer, question, f"answer number {i}")
    page = context.new_page()
    log_in(page, shared_system, asker, "/inbox")
    expect(page.locator("#inbox-items .inbox-item")).to_have_count(20)
    older = page.get_by_role("button", name="Show older items")
    older.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#inbox-items .inbox-item")).to_have_count(23)
    expect(older).to_be_hidden()
    expect(page.locator("#inbox-items .inbox-item").last).to_contain_text("answer number 0")
    focused = page.evaluate("document.activeElement.closest('.inbox-item')?.innerText ?? ''")
    assert "answer number 2" in focused
