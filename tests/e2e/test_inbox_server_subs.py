"""The inbox on a server-side subscription (issue 14, item 2), in Chromium against the real
system: the socket token names ``user:<id>`` in ``subs``, so the page never subscribes it;
after a reconnect the item it missed comes behind the connect reply, from the position the
connect command carried (docs/protocol.md#server-side-subscriptions). client-js opens fast, so
its connect travels in the upgrade request's open token (docs/protocol.md#fast-open): the
test reads it from the handshake through Chromium's DevTools protocol."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, WebSocket, expect

from socketsrv.protocol.opening import open_commands
from tests.e2e.conftest import VIEWPORT, log_in, make_user
from tests.e2e.system import LiveSystem

expect.set_options(timeout=20_000)


def open_commands_of(headers: dict[str, str]) -> list[dict[str, Any]]:
    """The commands of the open token among a handshake request's *headers*."""
    offered = next((v for k, v in headers.items() if k.lower() == "sec-websocket-protocol"), "")
    commands = open_commands([s.strip() for s in offered.split(",")])
    return [json.loads(c) for c in commands or []]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    yield context
    context.close()


def test_the_inbox_is_live_without_a_subscribe_and_recovers_through_the_connect(
    shared_system: LiveSystem, context: BrowserContext
) -> None:
    asker, answerer = make_user(shared_system, "Uma"), make_user(shared_system, "Vik")
    inbox = f"user:{asker.id}"
    q = shared_system.qa.call(
        "POST",
        "/api/questions",
        asker.token,
        json={"title": "Server subs?", "body": "B.", "tags": ["x"]},
    )
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []

    def watch(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    page = context.new_page()
    page.on("websocket", watch)
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.on(
        "Network.webSocketWillSendHandshakeRequest",
        lambda event: sent.extend(open_commands_of(event["request"]["headers"])),
    )
    log_in(page, shared_system, asker, "/inbox")
    page.wait_for_function(
        "(c) => window.herald?.stats.get(c)?.state === 'subscribed'"
        " && window.herald.stats.get(c).loads > 0",
        arg=inbox,
    )
    replies = [f for f in received if f.get("type") == "reply" and "subs" in f.get("result", {})]
    assert replies and replies[0]["result"]["subs"][inbox]["recovery"] in ("none", "recovered")
    page.evaluate("() => window.herald.client.disconnect()")
    page.wait_for_function("() => window.herald.client.state === 'disconnected'")
    shared_system.qa.call(
        "POST", f"/api/questions/{q['id']}/answers", answerer.token, json={"body": "While away."}
    )
    received.clear()
    page.evaluate("() => window.herald.client.connect()")
    expect(page.locator("#inbox-items .inbox-item").first).to_contain_text("While away.")
    connects = [c for c in sent if c.get("op") == "connect"]
    assert inbox in connects[-1].get("since", {}), connects[-1]
    assert [c for c in sent if c.get("op") == "subscribe" and c.get("channel") == inbox] == []
    reply = next(f for f in received if f.get("type") == "reply" and "subs" in f["result"])
    assert reply["result"]["subs"][inbox]["recovery"] == "recovered"
    first_pub = next(i for i, f in enumerate(received) if f.get("channel") == inbox)
    assert received.index(reply) < first_pub
    stats = page.evaluate("(c) => window.herald.stats.get(c)", inbox)
    assert stats["recovered"] >= 1 and stats["recoveryFailed"] == 0
