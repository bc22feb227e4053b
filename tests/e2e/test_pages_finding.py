"""Finding questions, tags and people (issue 13, items 1 and 2) in Chromium against the real
system (Redis, a two-worker fleet, the Q&A core on SQLite, then all again on PostgreSQL): pages
of 30 with shareable cursor URLs both ways, sort tabs and filter chips, the search page and the
header's search box, result counts, live "N new questions" banners per tag and per filtered
list, tag and user pages (the user page live), and their
HTML 404s.

One system and one browser serve the whole module (the questions are asked once); each test
reads its own part of them. Every wait is for a condition. Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.e2e.conftest import SCREENSHOTS, VIEWPORT, make_user, postgres_database
from tests.e2e.system import LiveSystem, User
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis
expect.set_options(timeout=20_000)

PHONE = {"width": 375, "height": 740}
FILLER = 31
"""Questions tagged only ``filler``: with the others, more than one page of 30."""


class Site:
    """The module's system and what was asked on it."""

    def __init__(self, system: LiveSystem) -> None:
        self.system = system
        self.url = system.qa.url
        self.ada = make_user(system, "Ada")
        self.bob = make_user(system, "Bob")
        self.socket_q = self.ask(
            self.ada, "Why does my websocket close with 1006?", ["websockets", "python"]
        )
        self.loop_q = self.ask(
            self.ada, "Which asyncio event loop runs uvloop?", ["asyncio", "python"]
        )
        for n in range(FILLER):
            self.ask(self.bob, f"Filler question number {n} about nothing", ["filler"])
        self.popular_q = self.ask(
            self.bob, "How do I read a websocket frame by hand?", ["websockets"]
        )
        self.ask(self.bob, "Which C# client reconnects by itself?", ["c#"])
        system.qa.call(
            "PUT", f"/api/questions/{self.loop_q}/vote", self.bob.token, json={"value": 1}
        )
        posted = system.qa.call(
            "POST", f"/api/questions/{self.socket_q}/answers", self.bob.token,
            json={"body": "A 1006 means the TCP connection dropped without a close frame."},
        )  # fmt: skip
        self.answer_id: int = posted["id"]
        self.total = FILLER + 4

    def ask(self, user: User, title: str, tags: list[str]) -> int:
        body = f"{title}\n\nDetails of the problem."
        question = self.system.qa.call(
            "POST", "/api/questions", user.token, json={"title": title, "body": body, "tags": tags}
        )
        question_id: int = question["id"]
        return question_id


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    """The module's system, on each database: search is where the two differ (FTS5 and
    bm25, tsvector and ts_rank), so every test here runs on both."""
    tmp: Path = tmp_path_factory.mktemp(f"finding-{request.param}")
    with contextlib.ExitStack() as stack:
        database_url = None
        if request.param == "postgresql":
            database_url = stack.enter_context(postgres_database())
        redis = RedisServer.launch(tmp / "redis")
        stack.callback(redis.close)
        system = LiveSystem.start(tmp, redis.url, database_url)
        stack.callback(system.close)
        yield Site(system)


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport=VIEWPORT)
    made.set_default_timeout(15_000)
    yield made
    made.close()


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    setattr(page, "js_errors", errors)  # noqa: B010
    page.goto(url)
    return page


def loaded(page: Page) -> None:
    expect(page.locator("#questions")).to_have_attribute("aria-busy", "false")


def titles(page: Page) -> list[str]:
    return page.locator("#questions .summary-title a").all_inner_texts()


def screenshots(page: Page, name: str) -> None:
    """The page at 1280 px and at 375 px, where nothing may scroll sideways."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", animations="disabled")
    page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), name
    page.screenshot(path=SCREENSHOTS / f"{name}-375.png", animations="disabled")
    page.set_viewport_size(VIEWPORT)


def assert_no_script_errors(page: Page) -> None:
    assert getattr(page, "js_errors", []) == []


def test_the_list_pages_through_every_question_with_a_url_that_can_be_shared(
    site: Site, context: BrowserContext
) -> None:
    page = open_page(context, f"{site.url}/")
    loaded(page)
    expect(page.locator("#result-count")).to_have_text(f"{site.total} questions")
    expect(page.locator("#questions > li.question-summary")).to_have_count(30)
    assert page.locator("#sort-tabs [aria-current=page]").inner_text() == "Newest"
    first = titles(page)
    expect(page.locator("#pager a")).to_have_text(["Next page »"])
    page.get_by_role("link", name="Next page »").click()
    page.wait_for_url("**/?cursor=*")
    loaded(page)
    second = titles(page)
    assert len(second) == site.total - 30
    expect(page.locator("#pager a")).to_have_text(["« First page", "\u2039 Previous page"])
    second_url = page.url

    # Back a page by its link (keyset cursors in both directions), then forwards again.
    page.get_by_role("link", name="\u2039 Previous page").click()
    page.wait_for_url(lambda url: url != second_url)
    loaded(page)
    assert titles(page) == first
    expect(page.locator("#pager a")).to_have_text(["Next page »"])  # the first page again
    page.get_by_role("link", name="Next page »").click()
    page.wait_for_url("**/?cursor=*")
    loaded(page)
    assert titles(page) == second

    shared = open_page(context, page.url)  # the same page, opened from the link
    loaded(shared)
    assert titles(shared) == second
    assert_no_script_errors(page)
    shared.close()
    page.close()


def test_sort_tabs_and_filter_chips_change_the_url_and_the_list(
    site: Site, context: BrowserContext
) -> None:
    page = open_page(context, f"{site.url}/")
    loaded(page)
    page.locator("#sort-tabs").get_by_role("link", name="Votes").click()
    page.wait_for_url("**/?sort=votes")
    loaded(page)
    assert titles(page)[0] == "Which asyncio event loop runs uvloop?"
    expect(page.locator("#sort-tabs [aria-current=page]")).to_have_text("Votes")
    assert page.locator("#main").get_attribute("data-live") == "none"

    page.get_by_role("button", name="Unanswered").focus()
    page.keyboard.press(" ")  # a toggle in the role of a button: Space presses it
    page.wait_for_url("**/?sort=votes&answered=false")
    loaded(page)
    expect(page.locator("#result-count")).to_have_text(f"{site.total - 1} questions")
    expect(page.get_by_role("button", name="Unanswered")).to_have_attribute("aria-pressed", "true")
    assert "Why does my websocket close with 1006?" not in titles(page)

    # A tag link narrows to the tag's page; the author's name leads to their page.
    item = page.locator(f"#q-{site.loop_q}")
    item.get_by_role("link", name="asyncio", exact=True).click()
    page.wait_for_url("**/tags/asyncio")
    loaded(page)
    expect(page.locator("h1")).to_have_text("Questions tagged asyncio")
    expect(page.locator("#result-count")).to_have_text("1 question")
    page.locator(f"#q-{site.loop_q}").get_by_role("link", name="Ada").click()
    page.wait_for_url(f"**/users/{site.ada.id}")
    assert_no_script_errors(page)
    page.close()


def test_searching_from_the_header_then_narrowing_with_the_filters(
    site: Site, context: BrowserContext
) -> None:
    page = open_page(context, f"{site.url}/")
    box = page.get_by_role("searchbox", name="Search questions")
    box.fill("websocket")
    box.press("Enter")
    page.wait_for_url("**/search?q=websocket")
    loaded(page)
    expect(page.locator("#result-count")).to_have_text("2 results for “websocket”")
    expect(page.locator("#sort-tabs [aria-current=page]")).to_have_text("Relevance")
    assert page.locator("#main").get_attribute("data-live") == "none"
    assert page.get_by_label("Words to search for").input_value() == "websocket"

    page.locator("#search-more summary").click()
    page.get_by_role("textbox", name="Tags").fill("python")
    page.get_by_label("Unanswered only").check()
    page.get_by_role("button", name="Search", exact=True).click()
    page.wait_for_url("**/search?q=websocket&tag=python&answered=false")
    loaded(page)
    expect(page.locator("#result-count")).to_have_text("0 results for “websocket”")
    expect(page.locator("#questions .empty")).to_have_text("No questions match.")
    expect(page.locator("#filter-chips .chip")).to_have_count(2)  # unanswered, tag: python

    page.get_by_role("link", name="Remove the tag python").click()
    page.wait_for_url("**/search?q=websocket&answered=false")
    loaded(page)
    assert titles(page) == ["How do I read a websocket frame by hand?"]
    screenshots(page, "search-filters")

    bad = open_page(context, f"{site.url}/search?q=x&cursor=forged.cursor")
    loaded(bad)
    expect(bad.locator("#list-error")).to_contain_text("cursor")
    assert_no_script_errors(page)
    bad.close()
    page.close()


def wait_live(page: Page, channel: str) -> None:
    page.wait_for_function(
        "(c) => window.herald?.stats.get(c)?.state === 'subscribed'"
        " && window.herald.stats.get(c).loads > 0",
        arg=channel,
    )


def test_a_tag_page_and_a_filtered_list_count_only_their_new_questions_live(
    site: Site, context: BrowserContext
) -> None:
    tag_page = open_page(context, f"{site.url}/tags/asyncio")
    filtered = open_page(context, f"{site.url}/?tag=python&answered=false")
    wait_live(tag_page, "tag:asyncio")
    wait_live(filtered, "tag:python")
    screenshots(tag_page, "tag-page")

    site.ask(site.bob, "Is asyncio.run safe inside a thread?", ["asyncio", "python"])
    site.ask(site.bob, "Does asyncio need python at all here?", ["asyncio"])
    site.ask(site.bob, "Another python question, not asyncio", ["python"])
    expect(tag_page.locator("#new-questions")).to_have_attribute("data-count", "2")
    expect(filtered.locator("#new-questions")).to_have_attribute("data-count", "2")
    expect(filtered.locator("#new-questions")).to_have_text("2 new questions: show")

    tag_page.locator("#new-questions").click()
    assert titles(tag_page)[:2] == [
        "Does asyncio need python at all here?",
        "Is asyncio.run safe inside a thread?",
    ]
    expect(tag_page.locator("#result-count")).to_have_text("3 questions")
    expect(tag_page.locator("#new-questions")).to_be_hidden()
    assert_no_script_errors(tag_page)
    tag_page.close()
    filtered.close()


def test_asking_from_a_tag_page_fills_in_its_tag_after_logging_in(
    site: Site, browser: Browser
) -> None:
    context = browser.new_context(viewport=VIEWPORT)  # its own: this one logs in
    try:
        page = open_page(context, f"{site.url}/tags/c%23")  # a tag that needs escaping
        expect(page.locator("h1")).to_have_text("Questions tagged c#")
        page.get_by_role("link", name="Ask a question").click()
        page.wait_for_url("**/login?next=*")
        page.get_by_label("Email").fill(site.ada.email)
        page.get_by_label("Password").fill(site.ada.password)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{site.url}/questions/ask?tags=c%23")
        expect(page.locator("#ask-page-tags")).to_have_value("c# ")
        assert_no_script_errors(page)
    finally:
        context.close()


def test_a_user_page_lists_their_questions_and_answers_and_since_when(
    site: Site, context: BrowserContext
) -> None:
    page = open_page(context, f"{site.url}/users/{site.bob.id}")
    expect(page.locator("h1")).to_have_text("Bob")
    expect(page.locator("#profile-meta")).to_contain_text("Member since")
    expect(page.locator("#profile-meta")).to_contain_text("questions · 1 answer")
    expect(page.locator("#profile-questions > li.question-summary")).to_have_count(20)
    page.get_by_role("button", name="More questions").click()
    expect(page.locator("#more-questions")).to_be_hidden()
    assert page.locator("#profile-questions > li.question-summary").count() > 20
    answer = page.locator(f"#a-{site.answer_id} a")
    expect(answer).to_have_text("Why does my websocket close with 1006?")
    assert answer.get_attribute("href") == f"/questions/{site.socket_q}#answer-{site.answer_id}"

    ada = open_page(context, f"{site.url}/users/{site.ada.id}")
    expect(ada.locator("#profile-meta")).to_contain_text("2 questions · 0 answers")
    expect(ada.locator("#profile-answers .empty")).to_have_text("No answers yet.")
    screenshots(ada, "user-page")
    assert_no_script_errors(page)
    page.close()
    ada.close()


def test_unknown_tags_and_users_are_html_404_pages(site: Site) -> None:
    for path, words in [
        ("/tags/nosuchtag", "There is no tag “nosuchtag”"),
        ("/tags/Not%20A%20Tag", "There is no tag"),
        ("/users/999999", "There is no such user."),
        ("/users/abc", "There is no such user."),
        ("/users/0", "There is no such user."),
    ]:
        response: Any = httpx.get(f"{site.url}{path}", headers={"Accept": "text/html"})
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert words in response.text, path


def test_the_question_page_links_its_tags_and_people_and_a_visitor_to_log_in(
    site: Site, context: BrowserContext
) -> None:
    page = open_page(context, f"{site.url}/questions/{site.socket_q}")
    question = page.locator(f"#question-{site.socket_q}")
    expect(question.locator(".tags a.tag")).to_have_text(["python", "websockets"])
    expect(question.get_by_role("link", name="Ada")).to_have_attribute(
        "href", f"/users/{site.ada.id}"
    )
    answer = page.locator(f"#answer-{site.answer_id}")
    expect(answer.get_by_role("link", name="Bob")).to_have_attribute(
        "href", f"/users/{site.bob.id}"
    )
    # A visitor is offered a way to log in, not comment boxes that lead there on submit.
    expect(page.locator(".comment-form")).to_have_count(0)
    login = question.get_by_role("link", name="Log in to comment")
    expect(login).to_have_attribute("href", f"/login?next=%2Fquestions%2F{site.socket_q}")
    expect(answer.get_by_role("link", name="Log in to comment")).to_be_visible()
    question.get_by_role("link", name="python", exact=True).click()
    page.wait_for_url("**/tags/python")
    loaded(page)
    expect(page.locator("h1")).to_have_text("Questions tagged python")

    page.go_back()
    page.locator(f"#answer-{site.answer_id}").get_by_role("link", name="Bob").click()
    page.wait_for_url(f"**/users/{site.bob.id}")
    expect(page.locator("h1")).to_have_text("Bob")
    assert_no_script_errors(page)
    page.close()


def wait_user_live(page: Page) -> None:
    """The user page has loaded after subscribing, and caught up on its questions' channels."""
    wait_live(page, "questions:new")
    page.wait_for_function(
        "() => window.heraldUser.watched().length > 0 && window.heraldUser.catchUps() > 0"
    )


def test_a_user_page_follows_their_new_posts_scores_and_accepts_live(
    site: Site, context: BrowserContext
) -> None:
    """Ada's page and Bob's, open while they ask, answer, vote and edit through the API."""
    ada_page = open_page(context, f"{site.url}/users/{site.ada.id}")
    bob_page = open_page(context, f"{site.url}/users/{site.bob.id}")
    wait_user_live(ada_page)
    wait_user_live(bob_page)
    asked = int(ada_page.locator("#profile-question-count").get_attribute("data-count") or 0)
    answered = int(bob_page.locator("#profile-answer-count").get_attribute("data-count") or 0)
    system = site.system

    # Ada asks: her page shows the question at the top and counts it.
    new_q = site.ask(site.ada, "Can a user page follow its owner live?", ["live"])
    row = ada_page.locator(f"#q-{new_q}")
    expect(row.locator(".summary-title")).to_have_text("Can a user page follow its owner live?")
    expect(ada_page.locator("#profile-questions > li").first).to_have_id(f"q-{new_q}")
    expect(ada_page.locator("#profile-question-count")).to_have_text(f"{asked + 1} questions")
    expect(bob_page.locator(f"#q-{new_q}")).to_have_count(0)

    # Bob votes it up and answers it: her line shows the vote and the answer.
    system.qa.call("PUT", f"/api/questions/{new_q}/vote", site.bob.token, json={"value": 1})
    expect(row.locator(".stat.votes")).to_have_text("1 vote")
    system.qa.call(
        "POST", f"/api/questions/{new_q}/answers", site.bob.token,
        json={"body": "Yes: through the channels of the questions it lists."},
    )  # fmt: skip
    expect(row.locator(".stat.answers")).to_have_text("1 answer")

    # Bob answers a question his page lists (through his earlier answer): the answer is at
    # the top of his answers, and his count includes the one his page does not list.
    posted = system.qa.call(
        "POST", f"/api/questions/{site.socket_q}/answers", site.bob.token,
        json={"body": "Also: a 1006 is never sent on the wire, only reported locally."},
    )  # fmt: skip
    line = bob_page.locator(f"#a-{posted['id']}")
    expect(line).to_contain_text("Why does my websocket close with 1006?")
    expect(bob_page.locator("#profile-answers > li").first).to_have_id(f"a-{posted['id']}")
    expect(bob_page.locator("#profile-answer-count")).to_have_text(f"{answered + 2} answers")

    # Ada votes that answer up, accepts it and edits her title: his page follows.
    system.qa.call("PUT", f"/api/answers/{posted['id']}/vote", site.ada.token, json={"value": 1})
    expect(line.locator(".stat.votes")).to_have_text("1 vote")
    system.qa.call("POST", f"/api/answers/{posted['id']}/accept", site.ada.token)
    expect(line).to_have_class("answer-line accepted")
    expect(line.locator(".stat.accepted")).to_be_visible()
    expect(bob_page.locator(f"#a-{site.answer_id}")).to_have_class("answer-line")
    system.qa.call(
        "PATCH", f"/api/questions/{site.socket_q}", site.ada.token,
        json={"title": "Why does my websocket close with code 1006?"},
    )  # fmt: skip
    expect(line.locator("a")).to_have_text("Why does my websocket close with code 1006?")
    expect(bob_page.locator(f"#a-{site.answer_id} a")).to_have_text(
        "Why does my websocket close with code 1006?"
    )
    expect(ada_page.locator(f"#q-{site.socket_q} .summary-title")).to_have_text(
        "Why does my websocket close with code 1006?"
    )

    # Bob deletes the answer: gone from his page and from his count.
    system.qa.call("DELETE", f"/api/answers/{posted['id']}", site.bob.token)
    expect(line).to_have_count(0)
    expect(bob_page.locator("#profile-answer-count")).to_have_text(f"{answered + 1} answers")
    assert_no_script_errors(ada_page)
    assert_no_script_errors(bob_page)
    ada_page.close()
    bob_page.close()
