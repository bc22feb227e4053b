"""The live pages in headless Chromium against the real system: Redis, the socket fleet
(two workers, a subprocess) and the Q&A core (a subprocess on a fresh SQLite file).

Nothing here asserts a timing: every wait is for a condition, bounded by a timeout.
The run saves screenshots of the pages to docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import APIResponse, BrowserContext, Page, Route, expect

from tests.e2e.conftest import SCREENSHOTS, log_in, make_user
from tests.e2e.system import LiveSystem, User
from tests.support.redis_server import RedisServer

expect.set_options(timeout=20_000)

NewContext = Callable[[], BrowserContext]


def watched(page: Page) -> Page:
    """*page* with its script errors collected (read back by :func:`assert_healthy`)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    setattr(page, "js_errors", errors)  # noqa: B010
    return page


def mark(page: Page) -> None:
    """A marker that a reload would wipe out (see :func:`assert_healthy`)."""
    page.evaluate("window.__notReloaded = true")


def open_page(context: BrowserContext, url: str) -> Page:
    page = watched(context.new_page())
    page.goto(url)
    mark(page)
    return page


def signed_in_page(context: BrowserContext, system: LiveSystem, user: User, path: str) -> Page:
    page = watched(context.new_page())
    log_in(page, system, user, path)
    mark(page)
    return page


def assert_healthy(page: Page) -> None:
    """No script error, and the page was never reloaded (its marker survived)."""
    assert getattr(page, "js_errors", []) == []
    assert page.evaluate("window.__notReloaded === true"), "the page was reloaded"


def channel_stats(page: Page, channel: str) -> dict[str, Any]:
    stats: dict[str, Any] = page.evaluate(
        "(channel) => ({ ...window.herald.stats.get(channel), "
        "offset: window.herald.client.getSubscription(channel)?.position?.offset ?? null })",
        channel,
    )
    return stats


def wait_live(page: Page, *channels: str) -> None:
    """Connected, every channel subscribed and its state loaded."""
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    for channel in channels:
        page.wait_for_function(
            "(c) => window.herald.stats.get(c)?.state === 'subscribed'"
            " && window.herald.stats.get(c).loads > 0",
            arg=channel,
        )


def wait_until(page: Page, condition: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    """Return once *condition()* holds; fail naming *what* after *timeout_s*.

    For conditions the browser cannot see (a route handler's list, the fleet's metrics).
    Between checks playwright keeps dispatching (``wait_for_timeout`` is the poll interval,
    never the thing waited for), so route handlers and page events run meanwhile.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout_s} s: {what}")
        page.wait_for_timeout(50)


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", animations="disabled")


def ask(system: LiveSystem, user: User, title: str, tags: list[str]) -> int:
    body = f"{title}\n\nWhat I tried so far is in the `code` below.\n\n    await ws.recv()"
    question = system.qa.call(
        "POST", "/api/questions", user.token, json={"title": title, "body": body, "tags": tags}
    )
    question_id: int = question["id"]
    return question_id


def answer(system: LiveSystem, user: User, question_id: int, body: str) -> int:
    posted = system.qa.call(
        "POST", f"/api/questions/{question_id}/answers", user.token, json={"body": body}
    )
    answer_id: int = posted["id"]
    return answer_id


def test_a_visitor_signs_up_verifies_the_email_from_the_dev_mailbox_and_logs_in(
    system: LiveSystem, new_context: NewContext
) -> None:
    page = open_page(new_context(), f"{system.qa.url}/signup")
    page.get_by_label("Display name").fill("Dana")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Sign up").click()

    page.wait_for_url("**/verify?email=*")
    expect(page.locator("#verify-status")).to_contain_text("dana@example.com")
    page.locator("#dev-verify-link").click()
    expect(page.locator("#verify-status")).to_contain_text("verified")
    page.locator("#verified-login").click()

    page.wait_for_url("**/login")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password").fill("a long enough password")
    screenshot(page, "login")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-form-error")).to_contain_text("wrong email or password")
    page.get_by_label("Password").fill("a long enough password")
    page.get_by_role("button", name="Log in").click()

    page.wait_for_url(f"{system.qa.url}/")
    expect(page.locator("#user-name")).to_have_text("Dana")
    expect(page.locator("#inbox-unread")).to_have_text("0")
    user_id = page.evaluate("JSON.parse(localStorage.getItem('herald.session')).user.id")
    wait_live(page, "questions:new", f"user:{user_id}")
    assert getattr(page, "js_errors", []) == []

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("link", name="Log in")).to_be_visible()
    assert page.evaluate("localStorage.getItem('herald.session')") is None

    missing = page.goto(f"{system.qa.url}/questions/999")
    assert missing is not None and missing.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    expect(page.locator("main")).to_contain_text("There is no such question")


def test_two_users_see_each_others_questions_votes_answers_and_comments_live(
    system: LiveSystem, new_context: NewContext
) -> None:
    alice, bob = make_user(system, "Alice"), make_user(system, "Bob")
    older = ask(system, alice, "Should a websocket server conflate vote counts?", ["websockets"])
    answer(system, bob, older, "Yes: send the newest absolute score with its version.")
    system.qa.call("PUT", f"/api/questions/{older}/vote", bob.token, json={"value": 1})
    ask(system, bob, "How large should a Redis stream history be?", ["redis", "streams"])
    first = ask(system, alice, "How do I resubscribe after a reconnect?", ["websockets"])
    alice_page = signed_in_page(new_context(), system, alice, "/")
    wait_live(alice_page, "questions:new", f"user:{alice.id}")
    expect(alice_page.locator("#questions > li")).to_have_count(3)

    # Bob asks two questions (the first through the ask page the list links to): Alice's
    # list counts them in the banner, then shows them.
    bob_page = signed_in_page(new_context(), system, bob, "/")
    bob_page.get_by_role("link", name="Ask a question").click()
    bob_page.wait_for_url("**/questions/ask")
    bob_page.get_by_label("Title").fill("Why does my Redis subscriber miss messages?")
    bob_page.get_by_label("Details").fill("Messages published during a reconnect.")
    bob_page.get_by_role("textbox", name="Tags").fill("redis pubsub")
    bob_page.get_by_role("button", name="Post your question").click()
    bob_page.wait_for_url(re.compile(r".*/questions/\d+$"))
    second = int(bob_page.url.rsplit("/", 1)[1])
    expect(bob_page.locator("#question-title")).to_have_text(
        "Why does my Redis subscriber miss messages?"
    )
    ask(system, bob, "What is a deaf socket?", ["websockets", "networking"])
    banner = alice_page.locator("#new-questions")
    expect(banner).to_have_text("2 new questions: show")
    screenshot(alice_page, "question-list-new-questions-banner")
    banner.click()
    expect(banner).to_be_hidden()
    expect(alice_page.locator("#questions > li")).to_have_count(5)
    expect(alice_page.locator("#questions > li").first).to_contain_text("What is a deaf socket?")
    assert_healthy(alice_page)

    # Alice reads her first question; Bob, in his own browser, votes, answers and comments.
    alice_page.goto(f"{system.qa.url}/questions/{first}")
    mark(alice_page)
    wait_live(alice_page, f"question:{first}")
    bob_page.goto(f"{system.qa.url}/questions/{first}")
    mark(bob_page)
    wait_live(bob_page, f"question:{first}")

    bob_page.get_by_role("button", name="Vote this question up").click()
    expect(bob_page.locator(f"#question-{first} .score")).to_have_text("1")
    bob_page.get_by_label("Answer (Markdown)").fill(
        "Keep each channel's **(epoch, offset)** and subscribe with `since` after reconnecting."
    )
    bob_page.get_by_role("button", name="Post your answer").click()
    bob_answer = bob_page.locator("#answers > article")
    expect(bob_answer).to_have_count(1)
    bob_page.locator(f"#question-{first} .comment-form input").fill("Which client library?")
    bob_page.locator(f"#question-{first} .comment-form button").click()

    alice_answers = alice_page.locator("#answers > article")
    expect(alice_page.locator(f"#question-{first} > .vote > .score")).to_have_text("1")
    expect(alice_answers).to_have_count(1)
    expect(alice_answers.first).to_contain_text("subscribe with since after reconnecting")
    expect(alice_page.locator("#answers-heading")).to_have_text("1 answer")
    expect(alice_page.locator(f"#question-{first} .comment")).to_contain_text(
        "Which client library?"
    )

    # Alice answers the comment, votes Bob's answer up and accepts it; Bob sees all of it.
    answer_id = alice_answers.first.get_attribute("id")
    alice_answers.first.get_by_role("button", name="Vote this answer up").click()
    alice_answers.first.get_by_role("button", name="Accept this answer").click()
    alice_page.locator(f"#question-{first} .comment-form input").fill("The one in client-js/.")
    alice_page.locator(f"#question-{first} .comment-form button").click()
    expect(bob_page.locator(f"#{answer_id} > .vote > .score")).to_have_text("1")
    expect(bob_page.locator(f"#{answer_id}")).to_have_class("post answer accepted")
    expect(bob_page.locator(f"#question-{first} .comment")).to_have_count(2)
    # Bob's answer to her older question; his answer and comment on this one, which she is
    # viewing, are read as they arrive (issue 13, item 6).
    expect(alice_page.locator("#inbox-unread")).to_have_text("1")
    screenshot(alice_page, "question-page-live-updates")

    # Each page loaded its state once and applied every publication of the channel.
    for page in (alice_page, bob_page):
        assert_healthy(page)
        stats = channel_stats(page, f"question:{first}")
        assert stats["loads"] == 1
        assert stats["recoveryFailed"] == 0
    assert second > first


def wait_list_live(page: Page) -> None:
    """The list page is live: its channels and every listed question's channel subscribed."""
    wait_live(page, "questions:new")
    page.wait_for_function(
        "() => window.heraldList.watched().length > 0 && window.heraldList.watched().every("
        "(id) => window.herald.client.getSubscription(`question:${id}`)?.state === 'subscribed')"
    )


def test_the_list_shows_scores_and_answer_counts_live_and_names_the_authors(
    system: LiveSystem, new_context: NewContext
) -> None:
    alice, bob = make_user(system, "Alice"), make_user(system, "Bob")
    older = ask(system, bob, "Which close codes should a client retry?", ["websockets"])
    first = ask(system, alice, "How do I keep a question list live?", ["websockets"])
    alice_page = signed_in_page(new_context(), system, alice, "/")
    wait_list_live(alice_page)
    assert sorted(alice_page.evaluate("window.heraldList.watched()")) == [older, first]
    row = alice_page.locator(f"#q-{first}")
    expect(row.locator(".meta")).to_contain_text("asked by Alice")
    expect(alice_page.locator(f"#q-{older} .meta")).to_contain_text("asked by Bob")
    expect(row.locator(".stat.votes")).to_have_text("0 votes")
    expect(row.locator(".stat.answers")).to_have_text("0 answers")

    # Bob, in his browser, votes Alice's question up and answers it: her list follows.
    bob_page = signed_in_page(new_context(), system, bob, f"/questions/{first}")
    wait_live(bob_page, f"question:{first}")
    expect(bob_page.locator(f"#question-{first} .meta").first).to_contain_text("asked by Alice")
    bob_page.get_by_role("button", name="Vote this question up").click()
    expect(bob_page.locator(f"#question-{first} .score")).to_have_text("1")
    bob_page.get_by_label("Answer (Markdown)").fill("Subscribe to each listed question's channel.")
    bob_page.get_by_role("button", name="Post your answer").click()
    expect(bob_page.locator("#answers > article .meta")).to_contain_text("answered by Bob (you)")
    expect(row.locator(".stat.votes")).to_have_text("1 vote")
    expect(row.locator(".stat.answers")).to_have_text("1 answer")
    expect(row.locator(".stat.answers")).to_have_class("stat answers answered")

    # Alice accepts it from her question page; a second answer arrives by API.
    system.qa.call("POST", f"/api/answers/{answer_id_of(bob_page)}/accept", alice.token)
    answer(system, bob, first, "Or one channel per list.")
    expect(row.locator(".stat.answers")).to_have_text("2 answers")
    expect(row.locator(".stat.answers")).to_have_class("stat answers answered accepted")
    screenshot(alice_page, "question-list-live-scores")

    # A new question of Bob's, shown through the banner, is followed too.
    newer = ask(system, bob, "Does a list page need a channel per question?", ["websockets"])
    banner = alice_page.locator("#new-questions")
    expect(banner).to_have_text("1 new question: show")
    banner.click()
    expect(alice_page.locator(f"#q-{newer} .meta")).to_contain_text("asked by Bob")
    alice_page.wait_for_function(
        "(id) => window.heraldList.watched().includes(id)"
        " && window.herald.client.getSubscription(`question:${id}`)?.state === 'subscribed'",
        arg=newer,
    )
    answer(system, alice, newer, "One per question, up to the page size.")
    expect(alice_page.locator(f"#q-{newer} .stat.answers")).to_have_text("1 answer")
    assert_healthy(alice_page)
    assert channel_stats(alice_page, "questions:new")["loads"] == 1

    # The question page and the inbox name the people.
    alice_page.goto(f"{system.qa.url}/questions/{first}")
    wait_live(alice_page, f"question:{first}")
    expect(alice_page.locator(f"#question-{first} .meta").first).to_contain_text(
        "asked by Alice (you)"
    )
    expect(alice_page.locator("#answers > article .meta").first).to_contain_text("answered by Bob")
    alice_page.goto(f"{system.qa.url}/inbox")
    expect(alice_page.locator("#inbox-items .inbox-item").first).to_contain_text("from Bob")


def answer_id_of(page: Page) -> int:
    """The id of the first answer on a question page."""
    article_id = page.locator("#answers > article").first.get_attribute("id")
    assert article_id is not None
    return int(article_id.removeprefix("answer-"))


def test_an_inbox_item_reaches_its_owner_and_never_the_other_user(
    system: LiveSystem, new_context: NewContext
) -> None:
    alice, bob = make_user(system, "Alice"), make_user(system, "Bob")
    question_id = ask(system, alice, "How are inbox counts kept in sync?", ["inbox"])
    # Alice is on the list: on the question itself, its new item would be read at once
    # (issue 13, item 6).
    alice_page = signed_in_page(new_context(), system, alice, "/")
    bob_page = signed_in_page(new_context(), system, bob, "/")
    wait_live(alice_page, f"user:{alice.id}")
    wait_live(bob_page, f"user:{bob.id}")

    answer_id = answer(system, bob, question_id, "Events carry the unread count, not a delta.")
    inbox_button = alice_page.get_by_role("button", name="Inbox, 1 unread item")
    expect(alice_page.locator("#inbox-unread")).to_have_text("1")
    # By keyboard: Enter opens the dropdown, Escape closes it and gives the focus back.
    inbox_button.focus()
    alice_page.keyboard.press("Enter")
    menu = alice_page.locator("#inbox-menu")
    expect(menu).to_be_visible()
    expect(inbox_button).to_have_attribute("aria-expanded", "true")
    alice_page.keyboard.press("Escape")
    expect(menu).to_be_hidden()
    expect(inbox_button).to_be_focused()
    expect(inbox_button).to_have_attribute("aria-expanded", "false")
    inbox_button.click()
    expect(menu).to_be_visible()
    expect(menu.locator(".inbox-item.unread")).to_have_count(1)
    expect(menu).to_contain_text("New answer to your question")
    expect(menu).to_contain_text("Events carry the unread count, not a delta.")
    screenshot(alice_page, "inbox-dropdown")

    # A later item for Bob (Alice comments on his answer): once it is in Bob's inbox, the
    # earlier item of Alice's, published before it, has had every chance to reach him.
    system.qa.call(
        "POST", f"/api/answers/{answer_id}/comments", alice.token, json={"body": "Thanks Bob!"}
    )
    expect(bob_page.locator("#inbox-unread")).to_have_text("1")
    bob_page.locator("#inbox-button").click()
    bob_items = bob_page.locator("#inbox-menu .inbox-item")
    expect(bob_items).to_have_count(1)
    expect(bob_items.first).to_contain_text("New comment on your post")
    expect(bob_items.first).to_contain_text("Thanks Bob!")
    assert "unread count" not in bob_page.locator("#inbox-menu").inner_text()

    # The fleet refuses Alice's channel to Bob's connection outright.
    code = bob_page.evaluate(
        """(channel) => new Promise((resolve) => {
            const sub = window.herald.client.subscribe(channel);
            sub.on('error', (error) => resolve(error.code));
            sub.on('subscribed', () => resolve('subscribed'));
        })""",
        f"user:{alice.id}",
    )
    assert code == 403

    # Following the item opens the question and marks it read, live in Alice's badge.
    alice_page.locator("#inbox-menu .inbox-link").first.click()
    alice_page.wait_for_url(f"**/questions/{question_id}#answer-{answer_id}")
    expect(alice_page.locator("#inbox-unread")).to_have_text("0")

    # The inbox page lists the item, read; Bob's next comment arrives there live.
    alice_page.goto(f"{system.qa.url}/inbox")
    expect(alice_page.locator("#inbox-summary")).to_have_text("0 unread items.")
    expect(alice_page.locator("#inbox-items .inbox-item")).to_have_count(1)
    system.qa.call(
        "POST", f"/api/questions/{question_id}/comments", bob.token, json={"body": "Welcome!"}
    )
    expect(alice_page.locator("#inbox-summary")).to_have_text("1 unread item.")
    expect(alice_page.locator("#inbox-items .inbox-item.unread")).to_contain_text("Welcome!")
    assert getattr(alice_page, "js_errors", []) == []


def test_publications_that_arrive_while_the_state_loads_are_applied_on_top_of_it(
    system: LiveSystem, new_context: NewContext
) -> None:
    """The page subscribes first and loads after the subscribe reply; here the load's answer
    is held back (a stale state) while new answers are published: they must still show."""
    alice, bob = make_user(system, "Alice"), make_user(system, "Bob")
    question_id = ask(system, alice, "What if an answer comes while the page loads?", ["race"])
    channel = f"question:{question_id}"
    answer(system, bob, question_id, "Answer 1, in the state.")
    context = new_context()
    held_back: list[tuple[Route, APIResponse]] = []

    def hold(route: Route) -> None:
        held_back.append((route, route.fetch()))  # the state as it is now, sent later

    context.route(f"**/api/questions/{question_id}", hold)
    page = watched(context.new_page())
    page.goto(f"{system.qa.url}/questions/{question_id}")
    page.wait_for_function("(c) => window.herald.stats.get(c)?.state === 'subscribed'", arg=channel)
    wait_until(page, lambda: bool(held_back), "the page asked for its state")
    answer(system, bob, question_id, "Answer 2, published during the load.")
    answer(system, bob, question_id, "Answer 3, published during the load.")
    page.wait_for_function("(c) => window.herald.stats.get(c).held === 2", arg=channel)
    for route, response in held_back:
        route.fulfill(response=response)

    answers = page.locator("#answers > article .body")
    expect(answers).to_have_count(3)
    assert answers.all_inner_texts() == [
        "Answer 1, in the state.",
        "Answer 2, published during the load.",
        "Answer 3, published during the load.",
    ]
    stats = channel_stats(page, channel)
    assert (stats["loads"], stats["applied"], stats["held"]) == (1, 2, 0)
    assert getattr(page, "js_errors", []) == []


def test_the_fleet_restarts_mid_test_and_the_page_converges_without_a_reload_or_a_lost_event(
    system: LiveSystem, new_context: NewContext
) -> None:
    alice, bob = make_user(system, "Alice"), make_user(system, "Bob")
    question_id = ask(system, alice, "Does a deploy lose my live updates?", ["deploys"])
    channel = f"question:{question_id}"
    page = open_page(new_context(), f"{system.qa.url}/questions/{question_id}")
    wait_live(page, channel)

    published = 0
    bodies: list[str] = []

    def bob_answers(n: int) -> None:
        nonlocal published
        for _ in range(n):
            bodies.append(f"Answer number {len(bodies) + 1} from Bob.")
            answer(system, bob, question_id, bodies[-1])
            published += 1

    bob_answers(2)
    expect(page.locator("#answers > article")).to_have_count(2)

    # SIGTERM: the fleet drains (close 4000 with a reconnect hint) and exits; while it is
    # gone, Bob keeps answering and voting (the Q&A core publishes to Redis regardless).
    assert system.stop_fleet() == 0
    expect(page.locator("#connection")).not_to_have_attribute("data-state", "connected")
    bob_answers(3)
    system.qa.call("PUT", f"/api/questions/{question_id}/vote", bob.token, json={"value": 1})
    published += 1
    system.start_fleet()
    bob_answers(2)

    answers = page.locator("#answers > article")
    # The client's backoff (full jitter, doubling while the fleet was away) may wait a while.
    expect(answers).to_have_count(len(bodies), timeout=60_000)
    expect(page.locator(f"#question-{question_id} > .vote > .score")).to_have_text("1")
    assert [answers.nth(i).locator(".body").inner_text() for i in range(len(bodies))] == bodies
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")

    assert_healthy(page)
    closes = page.evaluate("window.herald.closes")
    assert 4000 in closes, f"the drain closed the socket with 4000 (restart), saw {closes}"
    stats = channel_stats(page, channel)
    assert stats["loads"] == 1, "the state was never reloaded over HTTP"
    assert stats["recoveryFailed"] == 0
    assert stats["recovered"] >= 1, "the subscription recovered from its position"
    assert stats["applied"] == published
    assert stats["offset"] == published, "every offset of the channel was applied"


def test_redis_loses_its_history_and_the_page_reloads_its_state_over_http_without_a_reload(
    system: LiveSystem, redis_server: RedisServer, new_context: NewContext
) -> None:
    alice, bob = make_user(system, "Alice"), make_user(system, "Bob")
    question_id = ask(system, alice, "What if Redis restarts empty?", ["redis"])
    channel = f"question:{question_id}"
    page = open_page(new_context(), f"{system.qa.url}/questions/{question_id}")
    wait_live(page, channel)
    answer(system, bob, question_id, "Before the restart.")
    expect(page.locator("#answers > article")).to_have_count(1)

    # No persistence: the channel's history and epoch are gone. The next publication starts
    # a new epoch; the page is told that recovery failed and loads the question again.
    redis_server.restart(keep_data=False)
    answer(system, bob, question_id, "After the restart.")
    page.wait_for_function("(c) => window.herald.stats.get(c).recoveryFailed >= 1", arg=channel)
    page.wait_for_function("(c) => window.herald.stats.get(c).loads >= 2", arg=channel)
    expect(page.locator("#answers > article .body")).to_have_text(
        ["Before the restart.", "After the restart."]
    )

    # And it is live again in the new epoch.
    system.qa.call("PUT", f"/api/questions/{question_id}/vote", bob.token, json={"value": 1})
    expect(page.locator(f"#question-{question_id} > .vote > .score")).to_have_text("1")
    assert_healthy(page)


def test_two_tabs_of_one_user_share_one_socket_and_closing_the_leader_keeps_the_other_live(
    system: LiveSystem, new_context: NewContext
) -> None:
    alice, bob = make_user(system, "Alice"), make_user(system, "Bob")
    question_id = ask(system, alice, "Can tabs share one websocket?", ["browsers"])
    channel = f"question:{question_id}"
    context = new_context()
    first = signed_in_page(context, system, alice, f"/questions/{question_id}")
    wait_live(first, channel)
    second = open_page(context, f"{system.qa.url}/questions/{question_id}")
    wait_live(second, channel)

    roles = [page.evaluate("window.herald.client.role") for page in (first, second)]
    assert sorted(roles) == ["follower", "leader"]
    leader, follower = (first, second) if roles[0] == "leader" else (second, first)
    wait_until(first, lambda: system.fleet.connections_open() == 1, "one socket for two tabs")

    answer(system, bob, question_id, "Yes: a Web Lock elects a leader tab.")
    for page in (leader, follower):
        expect(page.locator("#answers > article")).to_have_count(1)

    leader.close()
    follower.wait_for_function("window.herald.client.role === 'leader'")
    expect(follower.locator("#connection")).to_have_attribute("data-state", "connected")
    system.qa.call("PUT", f"/api/questions/{question_id}/vote", bob.token, json={"value": 1})
    answer(system, bob, question_id, "And BroadcastChannel carries the publications.")
    expect(follower.locator("#answers > article")).to_have_count(2)
    expect(follower.locator(f"#question-{question_id} > .vote > .score")).to_have_text("1")
    wait_until(follower, lambda: system.fleet.connections_open() == 1, "the new leader's socket")

    assert_healthy(follower)
    stats = channel_stats(follower, channel)
    assert stats["recoveryFailed"] == 0
    assert stats["offset"] == 3
