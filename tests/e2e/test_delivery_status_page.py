"""The header's indicator tells the truth (issue 12, item 7; docs/pages.md and
docs/protocol.md#delivery): "Live" while updates flow, "Updates delayed" while the fleet's
Redis is down (the socket stays open, publications cannot reach the workers),
"Reconnecting…" while the fleet is down.

Headless Chromium against the real system (Redis, two fleet workers, the Q&A core); every
wait is for a condition, bounded by a timeout, never for a duration.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import make_user
from tests.e2e.system import LiveSystem
from tests.support.redis_server import RedisServer

expect.set_options(timeout=30_000)

NewContext = Callable[[], BrowserContext]


def indicator_says(page: Page, text: str, status: str) -> None:
    indicator = page.locator("#connection")
    expect(indicator).to_have_text(text)
    expect(indicator).to_have_attribute("data-status", status)


def reconnects(page: Page) -> int:
    """How many times the page's client has been (re)connecting after a close."""
    count: int = page.evaluate("window.herald.closes.length")
    return count


def test_the_indicator_says_updates_delayed_while_redis_is_down_and_reconnecting_while_the_fleet_is(
    system: LiveSystem, redis_server: RedisServer, new_context: NewContext
) -> None:
    alice = make_user(system, "Alice")
    question = system.qa.call(
        "POST",
        "/api/questions",
        alice.token,
        json={"title": "Why does my socket say live?", "body": "It says live.", "tags": ["redis"]},
    )
    page = new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{system.qa.url}/questions/{question['id']}")
    indicator_says(page, "Live", "live")
    page.wait_for_function(
        "(c) => window.herald.stats.get(c)?.state === 'subscribed'",
        arg=f"question:{question['id']}",
    )

    # Redis goes away: the socket to the fleet is fine, but nothing can be delivered.
    before = reconnects(page)
    redis_server.stop()
    indicator_says(page, "Updates delayed", "delayed")
    assert reconnects(page) == before, "told by the server, not by a reconnect"
    assert page.evaluate("window.herald.client.state") == "connected"
    assert system.fleet.http_get("/readyz")[0] == 503  # still down while the page says so

    # Redis is back: once the workers have repaired their channels the page is live again
    # (its channel's history was lost with the restart: it reconnects and reloads on the way).
    redis_server.start()
    indicator_says(page, "Live", "live")

    # The whole fleet goes away: no socket at all.
    assert system.stop_fleet() == 0
    indicator_says(page, "Reconnecting…", "reconnecting")
    system.start_fleet()
    indicator_says(page, "Live", "live")
    assert errors == []
