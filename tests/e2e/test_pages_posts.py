"""Asking, answering and owning your posts in the pages (issue 13, items 3 and 4), in headless
Chromium against the real system (Redis, a two-worker fleet, the Q&A core on SQLite).

One system and one browser for the module; every wait is for a condition. The run saves the
ask page and the question page's edit form to docs/screenshots/ at 1280 and 375 px.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import VIEWPORT, log_in, make_user
from tests.e2e.system import LiveSystem, User
from tests.e2e.test_live_pages import assert_healthy, screenshot, wait_live, watched
from tests.qasite.support import png_bytes
from tests.support.redis_server import RedisServer

expect.set_options(timeout=20_000)

PHONE = {"width": 375, "height": 740}
CODE = "```\ndef area(r):\n    return 3.14159 * r * r\n```"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSystem]:
    """One system for the module (each test makes its own users and questions)."""
    tmp: Path = tmp_path_factory.mktemp("posts")
    redis = RedisServer.launch(tmp / "redis")
    try:
        system = LiveSystem.start(tmp, redis.url)
        try:
            yield system
        finally:
            system.close()
    finally:
        redis.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def person(
    browser: Browser, contexts: list[BrowserContext], live: LiveSystem, user: User, path: str
) -> Page:
    """*user*'s own browser, signed in, on *path*; confirmations are accepted."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    contexts.append(context)
    page = watched(context.new_page())
    page.on("dialog", lambda dialog: dialog.accept())
    log_in(page, live, user, path)
    page.evaluate("window.__notReloaded = true")
    return page


def image(name: str, width: int, height: int) -> dict[str, object]:
    return {"name": name, "mimeType": "image/png", "buffer": png_bytes(width, height)}


def shows_an_image(page: Page, selector: str) -> None:
    img = page.locator(selector)
    expect(img).to_be_visible()
    page.wait_for_function("(s) => document.querySelector(s)?.naturalWidth > 0", arg=selector)


def test_the_ask_page_suggests_tags_previews_highlights_and_posts_with_an_image(
    live: LiveSystem, browser: Browser, contexts: list[BrowserContext]
) -> None:
    asker = make_user(live, "Ada")
    live.qa.call(
        "POST",
        "/api/questions",
        asker.token,
        json={"title": "An older question", "body": "x", "tags": ["python"]},
    )
    page = person(browser, contexts, live, asker, "/questions/ask")
    expect(page.get_by_role("heading", name="Writing a good question")).to_be_visible()

    page.get_by_label("Title").fill("How do I compute the area of a circle?")
    page.get_by_label("Details").fill(f"My attempt, which **works**:\n\n{CODE}")
    preview = page.locator("#ask-page-preview")
    expect(preview.locator("strong")).to_have_text("works")
    expect(preview.locator("pre code span.hljs-keyword").first).to_have_text("def")

    tags = page.locator("#ask-page-tags")
    tags.press_sequentially("pyt")
    page.get_by_role("list", name="Suggested tags").get_by_role("button", name="python").click()
    expect(tags).to_have_value("python ")
    expect(tags).to_be_focused()
    tags.press_sequentially("geometry")
    page.locator("#ask-page-images").set_input_files([image("circle.png", 40, 30)])  # type: ignore[list-item]
    screenshot(page, "ask-page")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    screenshot(page, "ask-page-375")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.set_viewport_size(VIEWPORT)

    # A tag outside the alphabet is refused in words, naming the field, never a pattern.
    tags.fill("python Geometry!")
    page.get_by_role("button", name="Post your question").click()
    expect(page.locator("#ask-page-form-error")).to_have_text(
        "Tags: 'geometry!' is not a tag: a tag is 1 to 35 lowercase letters, digits and the"
        " characters + # . - (it starts with a letter, a digit or a dot)"
    )
    tags.fill("python geometry")
    page.get_by_role("button", name="Post your question").click()
    page.wait_for_url(re.compile(r"/questions/\d+$"))
    expect(page.locator("#question-title")).to_have_text("How do I compute the area of a circle?")
    expect(page.locator(".question .tags")).to_contain_text("geometry")
    shows_an_image(page, ".question .attachments img")
    expect(page.locator(".question .body pre code span.hljs-keyword").first).to_have_text("def")
    assert page.evaluate("getComputedStyle(document.querySelector('.hljs-keyword')).color") != (
        page.evaluate("getComputedStyle(document.querySelector('.question .body pre code')).color")
    ), "the highlighter's style sheet is applied"
    assert page.evaluate("document.querySelectorAll('.question .body [style]').length") == 0
    assert getattr(page, "js_errors", []) == []


def test_two_people_see_each_others_edits_deletes_and_images_live_and_votes_are_kept(
    live: LiveSystem, browser: Browser, contexts: list[BrowserContext]
) -> None:
    asker, answerer = make_user(live, "Alice"), make_user(live, "Bob")
    question = live.qa.call(
        "POST",
        "/api/questions",
        asker.token,
        json={"title": "Why is my socket deaf?", "body": "It stops.", "tags": ["websockets"]},
    )
    path = f"/questions/{question['id']}"
    channel = f"question:{question['id']}"
    alice = person(browser, contexts, live, asker, path)
    bob = person(browser, contexts, live, answerer, path)
    wait_live(alice, channel)
    wait_live(bob, channel)

    # Bob answers with an image: Alice sees the answer, then the image, live.
    bob.get_by_label("Answer (Markdown)").fill(f"Send pings:\n\n{CODE}")
    expect(bob.locator("#answer-preview pre code span.hljs-keyword").first).to_be_visible()
    bob.locator("#answer-images").set_input_files([image("trace.png", 30, 20)])  # type: ignore[list-item]
    bob.get_by_role("button", name="Post your answer").click()
    answer = alice.locator("#answers > article").first
    expect(answer.locator(".body")).to_contain_text("Send pings")
    shows_an_image(alice, "#answers > article .attachments img")
    expect(answer.locator("pre code span.hljs-keyword").first).to_have_text("def")

    # Bob's vote on the question is shown after a reload, and clicking it again takes it back.
    up = bob.locator(".question .vote-up")
    up.click()
    expect(alice.locator(".question .score")).to_have_text("1")
    expect(up).to_have_attribute("aria-pressed", "true")
    bob.reload()
    wait_live(bob, channel)
    expect(bob.locator(".question .vote-up")).to_have_attribute("aria-pressed", "true")
    bob.locator(".question .vote-up").click()
    expect(alice.locator(".question .score")).to_have_text("0")
    expect(bob.locator(".question .vote-up")).to_have_attribute("aria-pressed", "false")
    bob.evaluate("window.__notReloaded = true")

    # Alice sees Bob's edit, with its revision note; no one else has edit buttons.
    expect(alice.locator("#answers .edit-post")).to_have_count(0)
    bob.locator("#answers .edit-post").click()
    editor = bob.locator("#answers .post-editor")
    editor.get_by_label("Body").fill("Send pings every **20 s**.")
    expect(editor.locator(".preview strong")).to_have_text("20 s")
    bob.set_viewport_size(PHONE)  # type: ignore[arg-type]
    screenshot(bob, "question-edit-answer-375")
    assert bob.evaluate("document.documentElement.scrollWidth <= innerWidth")
    bob.set_viewport_size(VIEWPORT)
    screenshot(bob, "question-edit-answer")
    editor.get_by_role("button", name="Save edits").click()
    expect(answer.locator(".body strong")).to_have_text("20 s")
    expect(answer.locator(".meta .edited")).to_contain_text("edited")
    expect(bob.locator("#answers .post-editor")).to_have_count(0)

    # Alice edits her question; Bob sees the new title, body, tags and note.
    alice.locator(".question .edit-post").click()
    editor = alice.locator(".question .post-editor")
    editor.get_by_label("Title").fill("Why does my socket go deaf?")
    editor.get_by_label("Body").fill("It stops receiving after a minute.")
    editor.get_by_label("Tags").fill("websockets redis")
    editor.get_by_role("button", name="Save edits").click()
    expect(bob.locator("#question-title")).to_have_text("Why does my socket go deaf?")
    expect(bob.locator(".question .body")).to_have_text("It stops receiving after a minute.")
    expect(bob.locator(".question .tags")).to_contain_text("redis")
    expect(bob.locator(".question .meta .edited")).to_contain_text("edited")

    # Comments: Bob's comment edited and deleted, live for Alice.
    bob.locator(".question .comment-form input").fill("Which client?")
    bob.locator(".question .comment-form").get_by_role("button", name="Comment").click()
    comment = alice.locator(".question .comment").first
    expect(comment.locator(".comment-body")).to_have_text("Which client?")
    expect(alice.locator(".comment .edit-comment")).to_have_count(0)
    bob.get_by_role("button", name="Edit your comment").click()
    bob.locator(".comment-edit input").fill("Which client library?")
    bob.locator(".comment-edit").get_by_role("button", name="Save").click()
    expect(comment.locator(".comment-body")).to_have_text("Which client library?")
    expect(comment.locator(".edited")).to_contain_text("edited")
    bob.get_by_role("button", name="Delete your comment").click()
    expect(alice.locator(".question .comment")).to_have_count(0)

    # Bob deletes his answer; Alice deletes her question: each is gone on the other's page.
    bob.locator("#answers .delete-post").click()
    expect(alice.locator("#answers > article")).to_have_count(0)
    expect(alice.locator("#answers-heading")).to_have_text("0 answers")
    alice.locator(".question .delete-post").click()
    alice.wait_for_url(f"{live.qa.url}/")
    expect(bob.get_by_role("heading", name="This question was deleted")).to_be_visible()
    assert_healthy(bob)
