"""A second app on the same fleet (issue 14, item 4), end to end: the notification example
(examples/notifications/) on a real Redis, the fleet (``python -m socketsrv``, 2 workers) and
the publish API (``python -m publish_api``), all given the example's namespace file. Its Node
publisher publishes likes, comments and feed items over HTTP; its Node subscriber (client-js
in Node) receives them in order with the offsets the API answered; a user's feed is refused
to anyone else; a lost answer is retried with the same event ids and published once; the
Q&A site's kinds work beside the new ones. The publisher's own unit tests (node --test) run
here too, so all of it is inside ``./herald test``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import sync_playwright

from herald_contract.keys import KeyLayout
from herald_contract.namespaces_file import DEFAULT_FILE, load_namespaces
from tests.examples.support import (
    API_KEY,
    EXAMPLE,
    NAMESPACES_FILE,
    NODE,
    ROOT,
    WAIT_S,
    AnswerLosingProxy,
    PublishApi,
    publish,
    static_server,
    subscriber,
)
from tests.support.client_js import built_client_js
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer
from tests.support.tokens import TokenIssuer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(300)]

KEYS = KeyLayout()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the example's tests must run)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def client_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """client-js/dist, which the subscriber imports, built when missing or older than src/
    (tests/support/client_js.py: the same lock as the browser tests' build)."""
    if shutil.which(NODE) is None:
        _missing("node is missing: install Node >= 20")
    return built_client_js(tmp_path_factory, _missing)


@dataclass
class System:
    redis: RedisServer
    fleet: Fleet
    api: PublishApi
    issuer: TokenIssuer

    def herald_publish(self, channel: str, data: object) -> dict[str, object]:
        """``python -m publisher`` (the Q&A core's library) with the example's file."""
        env = {
            **os.environ,
            "HERALD_REDIS_URL": self.redis.url,
            "HERALD_NAMESPACES_FILE": str(NAMESPACES_FILE),
        }
        done = subprocess.run(
            [sys.executable, "-m", "publisher", channel, json.dumps(data)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answer: dict[str, object] = json.loads(done.stdout)
        return answer


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, client_build: Path) -> Iterator[System]:
    """One system for the module: each test uses channels of its own."""
    tmp = tmp_path_factory.mktemp("notifications")
    issuer = TokenIssuer()
    redis = RedisServer.launch(tmp / "redis")
    fleet = api = None
    try:
        fleet = Fleet(
            redis_url=redis.url,
            workers=2,
            log=tmp / "fleet.log",
            HERALD_NAMESPACES_FILE=str(NAMESPACES_FILE),
            HERALD_JWT_PUBLIC_KEY_PEM=issuer.public_pem,
        )
        api = PublishApi(redis.url, tmp / "api.log")
        fleet.wait_ready()
        api.wait_ready()
        yield System(redis, fleet, api, issuer)
    finally:
        if api is not None:
            api.close()
        if fleet is not None:
            fleet.close()
        redis.close()


def positions(events: list[dict[str, object]]) -> list[tuple[object, object]]:
    return [(e["epoch"], e["offset"]) for e in events]


def test_the_node_publisher_passes_its_unit_tests() -> None:
    if shutil.which(NODE) is None:
        _missing("node is missing: install Node >= 20")
    done = subprocess.run(
        [NODE, "--test", str(EXAMPLE / "test")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout


def test_the_example_file_is_the_shipped_file_plus_three_kinds() -> None:
    shipped = (ROOT / "herald_contract" / DEFAULT_FILE).read_text()
    example = NAMESPACES_FILE.read_text()
    assert shipped[shipped.index("\n[[namespace]]") :] in example  # the Q&A kinds, unchanged
    kinds = [entry["name"] for entry in tomllib.loads(example)["namespace"]]
    assert kinds == ["question", "questions", "tag", "user", "probe", "post", "feed", "group"]
    load_namespaces(NAMESPACES_FILE)  # a file every program accepts


def test_likes_comments_and_feed_items_arrive_in_order_with_the_offsets_the_api_gave(
    system: System,
) -> None:
    author = system.issuer.token("42")
    with subscriber(system.fleet.url, ["post:7", "feed:42"], author) as tab:
        tab.wait_subscribed("post:7", "feed:42")
        common = ["--post", "7", "--author", "42"]
        _, comment = publish(
            system.api.url, "comment", *common, "--by", "9", "--comment", "300",
            "--text", "Lovely light", "--likes", "0", "--comments", "1",
        )  # fmt: skip
        _, like1 = publish(
            system.api.url, "like", *common, "--by", "9", "--likes", "1", "--comments", "1"
        )
        _, like2 = publish(
            system.api.url, "like", *common, "--by", "11", "--likes", "2", "--comments", "1"
        )
        _, fanout = publish(
            system.api.url, "fanout", "--followers", "42,43", "--post", "8", "--by", "5"
        )

        on_post = tab.wait_publications("post:7", 4)
        on_feed = tab.wait_publications("feed:42", 4)
    sent_post = [comment["comment"], comment["counts"], like1["counts"], like2["counts"]]
    sent_feed = [comment["feed"], like1["feed"], like2["feed"], fanout[0]]
    assert positions(on_post) == [(p["epoch"], p["offset"]) for p in sent_post]
    assert positions(on_feed) == [(p["epoch"], p["offset"]) for p in sent_feed]
    assert [p["offset"] for p in on_post] == [1, 2, 3, 4]  # a new channel: nothing lost
    assert [p["offset"] for p in on_feed] == [1, 2, 3, 4]
    assert [p["data"] for p in on_post] == [
        {"type": "comment", "post": 7, "id": 300, "by": 9, "text": "Lovely light"},
        {"type": "counts", "post": 7, "likes": 0, "comments": 1},
        {"type": "counts", "post": 7, "likes": 1, "comments": 1},
        {"type": "counts", "post": 7, "likes": 2, "comments": 1},
    ]
    assert [p["data"] for p in on_feed] == [
        {"type": "comment", "post": 7, "id": 300, "by": 9},
        {"type": "like", "post": 7, "by": 9},
        {"type": "like", "post": 7, "by": 11},
        {"type": "post", "post": 8, "by": 5},
    ]
    assert fanout[1]["channel"] == "feed:43"


def test_a_users_feed_is_refused_to_another_user_and_to_a_visitor(system: System) -> None:
    other = system.issuer.token("43", channels=["group:team-7"])
    with (
        subscriber(system.fleet.url, ["feed:52", "feed:43", "group:team-7", "group:team-8"], other)
        as tab,
        subscriber(system.fleet.url, ["feed:52", "post:12"]) as visitor,  # no token
    ):  # fmt: skip
        tab.wait_subscribed("feed:43", "group:team-7")
        visitor.wait_subscribed("post:12")
        tab.wait_for("feed:52 refused", lambda: bool(tab.of("error", "feed:52")))
        tab.wait_for("group:team-8 refused", lambda: bool(tab.of("error", "group:team-8")))
        visitor.wait_for("feed:52 refused", lambda: bool(visitor.of("error", "feed:52")))
        assert [e["code"] for e in tab.of("error")] == [403, 403]
        assert [e["code"] for e in visitor.of("error")] == [403]

        publish(system.api.url, "like", "--post", "12", "--author", "52", "--by", "43",
                "--likes", "1", "--comments", "0")  # fmt: skip
        publish(system.api.url, "publish", "--channel", "group:team-7",
                "--data", '{"type": "announcement", "text": "Standup moved"}')  # fmt: skip
        visitor.wait_publications("post:12", 1)
        tab.wait_publications("group:team-7", 1)
        publish(system.api.url, "fanout", "--followers", "43", "--post", "13", "--by", "52")
        tab.wait_publications("feed:43", 1)  # after the like: had feed:52 leaked, it came first
        assert tab.publications("feed:52") == visitor.publications("feed:52") == []
        assert not tab.of("subscribed", "feed:52") and not tab.of("subscribed", "group:team-8")


def test_an_answer_lost_on_the_way_is_retried_with_the_same_event_ids_and_published_once(
    system: System,
) -> None:
    proxy = AnswerLosingProxy(system.api.port)
    try:
        with subscriber(system.fleet.url, ["post:21", "feed:62"], system.issuer.token("62")) as tab:
            tab.wait_subscribed("post:21", "feed:62")
            done, like = publish(proxy.url, "like", "--post", "21", "--author", "62",
                                 "--by", "7", "--likes", "1", "--comments", "0")  # fmt: skip
            assert proxy.answers_lost == 1 and proxy.connections >= 2
            assert "publisher: retry 1 in" in done.stderr
            # The first attempt published; the retry found both publications made.
            assert like["counts"]["duplicate"] is True and like["feed"]["duplicate"] is True
            publish(system.api.url, "like", "--post", "21", "--author", "62", "--by", "8",
                    "--likes", "2", "--comments", "0")  # fmt: skip
            on_post = tab.wait_publications("post:21", 2)
            on_feed = tab.wait_publications("feed:62", 2)
    finally:
        proxy.close()
    assert [p["data"]["likes"] for p in on_post] == [1, 2]  # once, then the next like
    assert [p["data"]["by"] for p in on_feed[-2:]] == [7, 8]
    assert on_post[0]["offset"] == like["counts"]["offset"]


def test_the_qa_kinds_work_beside_the_new_ones_on_the_same_fleet(system: System) -> None:
    member = system.issuer.token("42")
    channels = ["question:5", "questions:new", "user:42", "user:43", "post:30"]
    with subscriber(system.fleet.url, channels, member) as tab:
        tab.wait_subscribed("question:5", "questions:new", "user:42", "post:30")
        tab.wait_for("user:43 refused", lambda: bool(tab.of("error", "user:43")))
        score = {"type": "score", "question": 5, "post": "question:5", "score": 3, "version": 1}
        first = system.herald_publish("question:5", score)  # as the Q&A core's relay does
        _, second = publish(
            system.api.url, "publish", "--channel", "question:5",
            "--data", json.dumps({**score, "score": 4, "version": 2}),
        )  # fmt: skip
        inbox = system.herald_publish("user:42", {"type": "inbox", "unread": 1})
        _, counts = publish(system.api.url, "like", "--post", "30", "--author", "42",
                            "--by", "43", "--likes", "1", "--comments", "0")  # fmt: skip
        on_question = tab.wait_publications("question:5", 2)
        tab.wait_publications("user:42", 1)
        tab.wait_publications("post:30", 1)
    assert [p["offset"] for p in on_question] == [first["offset"], second["offset"]] == [1, 2]
    assert [p["data"]["score"] for p in on_question] == [3, 4]
    assert tab.publications("user:42")[0]["offset"] == inbox["offset"]
    assert tab.publications("post:30")[0]["offset"] == counts["counts"]["offset"]
    assert [e["code"] for e in tab.of("error")] == [403]


def test_a_503_while_redis_is_down_is_retried_until_redis_is_back(tmp_path: Path) -> None:
    """Its own Redis and publish API (no fleet): the API answers 503 while Redis is stopped,
    the publisher retries the same batch, and once Redis is back it is published, once."""
    redis = RedisServer.launch(tmp_path / "redis")
    api = PublishApi(redis.url, tmp_path / "api.log")
    process = None
    try:
        api.wait_ready()
        redis.stop()
        process = subprocess.Popen(
            [NODE, str(EXAMPLE / "publisher.mjs"), "like", "--api", api.url, "--post", "40",
             "--author", "42", "--by", "9", "--likes", "1", "--comments", "0",
             "--event-id", "like-4001", "--retry-for-ms", "120000"],
            cwd=ROOT, env={**os.environ, "HERALD_API_KEY": API_KEY},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert process.stderr is not None
        first_retry = process.stderr.readline()  # blocks until the publisher reports a retry
        assert first_retry.startswith("publisher: retry 1 in "), first_retry + api.log()
        assert "after 503 unavailable" in first_retry
        redis.start()
        stdout, stderr = process.communicate(timeout=150)
        assert process.returncode == 0, stderr
        like = json.loads(stdout)
        assert like["counts"]["offset"] == like["feed"]["offset"] == 1
        client = redis.client()
        assert client.xlen(KEYS.history("post:40")) == client.xlen(KEYS.history("feed:42")) == 1
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        api.close()
        redis.close()


def test_the_page_shows_a_posts_counts_comments_and_the_feed_live(system: System) -> None:
    chromium = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        _missing(f"no Chromium at {chromium}: apt-get install -y chromium (or set CHROMIUM_PATH)")
    fragment = urlencode(
        {"post": "50", "user": "72", "socket": system.fleet.url, "token": system.issuer.token("72")}
    )
    with static_server() as web, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{web}/examples/notifications/page.html#{fragment}")
            page.wait_for_function(
                "() => ['post:50', 'feed:72'].every("
                "(name) => window.client?.getSubscription(name)?.state === 'subscribed')",
                timeout=WAIT_S * 1000,
            )
            publish(system.api.url, "comment", "--post", "50", "--author", "72", "--by", "9",
                    "--comment", "500", "--text", "Where was this?", "--likes", "0",
                    "--comments", "1")  # fmt: skip
            publish(system.api.url, "like", "--post", "50", "--author", "72", "--by", "11",
                    "--likes", "1", "--comments", "1")  # fmt: skip
            page.wait_for_function("() => window.events.length === 5", timeout=WAIT_S * 1000)
            assert page.text_content("#likes") == "1"
            assert page.text_content("#comments") == "1"
            assert page.locator("#comment-list li").all_text_contents() == [
                "user 9: Where was this?"
            ]
            assert page.locator("#feed li").all_text_contents() == [
                "user 9 commented on post 50",
                "user 11 liked post 50",
            ]
            events = page.evaluate("() => window.events")
            # In order on each channel (a batch publishes different channels in parallel).
            for channel, offsets in (("post:50", [1, 2, 3]), ("feed:72", [1, 2])):
                assert [e["offset"] for e in events if e["channel"] == channel] == offsets
            assert errors == []
        finally:
            browser.close()
