"""The question page cache: a page cached by two app instances on one database shows each kind
of write on the next GET of the other instance, the cached bytes are the page the ORM builder
makes, and hostile bytes in Redis are a counted miss (qasite/api/page.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import httpx
import pytest

from qasite.api.outputs import question_out
from qasite.core.settings import Settings
from qasite.domain.posts import load_question
from tests.qasite.support import QA, User, png_bytes, running_qa
from tests.support.redis_server import RedisServer

Page = dict[str, Any]


@pytest.fixture
async def pair(settings: Settings) -> AsyncIterator[tuple[QA, QA]]:
    """Two instances of the app on one database (two workers, no Redis: L1 only)."""
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_qa(settings, migrate_on_start=False))
        b = await stack.enter_async_context(running_qa(settings, migrate_on_start=False))
        yield a, b


def lookups(qa: QA, level: str, result: str) -> float:
    value = qa.app.state.metrics.registry.get_sample_value(
        "herald_qa_page_cache_total", {"level": level, "result": result}
    )
    return float(value or 0.0)


async def page(qa: QA, question_id: int, user: User | None = None) -> Page:
    r = await qa.client.get(
        f"/api/questions/{question_id}", headers=user.headers if user is not None else None
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    body: Page = r.json()
    return body


async def cached_in_both(a: QA, b: QA, question_id: int) -> Page:
    """Read the page twice on each instance; the second read of each is an L1 hit."""
    for qa in (a, b):
        await page(qa, question_id)
        hits = lookups(qa, "l1", "hit")
        seen = await page(qa, question_id)
        assert lookups(qa, "l1", "hit") == hits + 1, "the page was not served from the cache"
    return seen


Write = Callable[[QA, User, User, Page], Awaitable[None]]


async def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if status != 204 else None


async def edit_question(qa: QA, asker: User, _other: User, q: Page) -> None:
    await ok(
        await qa.client.patch(
            f"/api/questions/{q['id']}",
            json={"title": "How do I read a file in Python 3?", "tags": ["io", "python"]},
            headers=asker.headers,
        )
    )


async def vote_question(qa: QA, _asker: User, other: User, q: Page) -> None:
    path = f"/api/questions/{q['id']}/vote"
    await ok(await qa.client.put(path, json={"value": 1}, headers=other.headers))


async def post_answer(qa: QA, _asker: User, other: User, q: Page) -> None:
    await qa.answer(other, q["id"], "Use pathlib.Path.read_text.")


async def answer_of(qa: QA, other: User, q: Page) -> int:
    return int((await qa.answer(other, q["id"]))["id"])


WRITES: dict[str, Write] = {"edit question": edit_question, "vote on question": vote_question,
                            "post answer": post_answer}  # fmt: skip


def expectations() -> list[tuple[str, Callable[[Page], bool]]]:
    return [
        (
            "edit question",
            lambda p: p["title"].endswith("Python 3?") and p["tags"] == ["io", "python"],
        ),
        ("vote on question", lambda p: p["score"] == 1),
        (
            "post answer",
            lambda p: [a["body_md"] for a in p["answers"]] == ["Use pathlib.Path.read_text."],
        ),
    ]


@pytest.mark.parametrize(("write", "shows"), expectations(), ids=[e[0] for e in expectations()])
async def test_a_question_write_on_one_instance_shows_on_the_others_next_get(
    pair: tuple[QA, QA], write: str, shows: Callable[[Page], bool]
) -> None:
    a, b = pair
    asker, other = await a.signup(), await a.signup()
    q = await a.ask(asker)
    before = await cached_in_both(a, b, q["id"])
    assert not shows(before)
    await WRITES[write](a, asker, other, q)
    assert shows(await page(b, q["id"])), "instance b served its stale page"
    assert shows(await page(a, q["id"])), "instance a served its stale page"


async def test_writes_under_the_question_show_on_the_other_instance(pair: tuple[QA, QA]) -> None:
    """Answer edit, vote, acceptance, comments (post, edit, delete), attachments, answer delete:
    after each, the other instance's next GET shows it."""
    a, b = pair
    asker, other, voter = await a.signup(), await a.signup(), await a.signup()
    q = await a.ask(asker)
    answer_id = await answer_of(a, other, q)
    client = a.client

    async def step(
        what: str, do: Callable[[], Awaitable[Any]], shows: Callable[[Page], bool]
    ) -> None:
        await cached_in_both(a, b, q["id"])
        done = await do()
        if isinstance(done, httpx.Response):
            assert done.is_success, done.text
        seen = await page(b, q["id"])
        assert shows(seen), f"after {what}, instance b served a stale page: {seen}"

    await step(
        "an answer edit",
        lambda: client.patch(
            f"/api/answers/{answer_id}", json={"body": "Edited."}, headers=other.headers
        ),
        lambda p: (
            p["answers"][0]["body_md"] == "Edited." and p["answers"][0]["edited_at"] is not None
        ),
    )
    await step(
        "a vote on the answer",
        lambda: client.put(
            f"/api/answers/{answer_id}/vote", json={"value": -1}, headers=voter.headers
        ),
        lambda p: p["answers"][0]["score"] == -1,
    )
    await step(
        "an acceptance",
        lambda: client.post(f"/api/answers/{answer_id}/accept", headers=asker.headers),
        lambda p: p["accepted_answer_id"] == answer_id and p["answers"][0]["accepted"],
    )
    comment: Page = {}

    async def comment_on_answer() -> None:
        r = await client.post(
            f"/api/answers/{answer_id}/comments", json={"body": "Thanks!"}, headers=asker.headers
        )
        comment.update(await ok(r, 201))

    await step(
        "a comment on the answer",
        comment_on_answer,
        lambda p: [c["body"] for c in p["answers"][0]["comments"]] == ["Thanks!"],
    )
    await step(
        "a comment on the question",
        lambda: client.post(
            f"/api/questions/{q['id']}/comments", json={"body": "Which OS?"}, headers=other.headers
        ),
        lambda p: [c["body"] for c in p["comments"]] == ["Which OS?"],
    )
    await step(
        "a comment edit",
        lambda: client.patch(
            f"/api/comments/{comment['id']}", json={"body": "Thanks a lot!"}, headers=asker.headers
        ),
        lambda p: [c["body"] for c in p["answers"][0]["comments"]] == ["Thanks a lot!"],
    )
    await step(
        "a comment delete",
        lambda: client.delete(f"/api/comments/{comment['id']}", headers=asker.headers),
        lambda p: p["answers"][0]["comments"] == [],
    )
    image = {"Content-Type": "image/png"}
    await step(
        "an attachment on the question",
        lambda: client.post(
            f"/api/questions/{q['id']}/attachments",
            content=png_bytes(),
            headers=asker.headers | image,
        ),
        lambda p: len(p["attachments"]) == 1,
    )
    await step(
        "an attachment on the answer",
        lambda: client.post(
            f"/api/answers/{answer_id}/attachments",
            content=png_bytes(),
            headers=other.headers | image,
        ),
        lambda p: len(p["answers"][0]["attachments"]) == 1,
    )
    await step(
        "an answer delete",
        lambda: client.delete(f"/api/answers/{answer_id}", headers=other.headers),
        lambda p: p["answers"] == [] and p["answer_count"] == 0 and p["accepted_answer_id"] is None,
    )


async def test_a_deleted_question_is_404_on_the_other_instance(pair: tuple[QA, QA]) -> None:
    a, b = pair
    asker = await a.signup()
    q = await a.ask(asker)
    await cached_in_both(a, b, q["id"])
    await ok(await a.client.delete(f"/api/questions/{q['id']}", headers=asker.headers), 204)
    assert (await b.client.get(f"/api/questions/{q['id']}")).status_code == 404


async def test_the_cached_page_is_the_page_the_orm_builder_makes(qa: QA) -> None:
    asker, other, voter = await qa.signup(name="Ada"), await qa.signup(), await qa.signup()
    q = await qa.ask(asker, tags=["python", "files"])
    first = await qa.answer(other, q["id"])
    await qa.answer(voter, q["id"], "Or open().")
    c = qa.client
    await c.post(
        f"/api/answers/{first['id']}/comments", json={"body": "Nice"}, headers=asker.headers
    )
    await c.post(f"/api/questions/{q['id']}/comments", json={"body": "Hm"}, headers=voter.headers)
    await c.put(f"/api/answers/{first['id']}/vote", json={"value": 1}, headers=voter.headers)
    await c.post(f"/api/answers/{first['id']}/accept", headers=asker.headers)
    await c.post(
        f"/api/questions/{q['id']}/attachments",
        content=png_bytes(),
        headers=asker.headers | {"Content-Type": "image/png"},
    )
    for viewer in (None, voter):
        served = await page(qa, q["id"], viewer)
        again = await page(qa, q["id"], viewer)
        async with qa.context.db.reads() as session:
            question = await load_question(session, q["id"])
            built = await question_out(
                session, question, viewer_id=None if viewer is None else viewer.id
            )
        assert served == again == built.model_dump(mode="json")
    assert (await page(qa, q["id"], voter))["answers"][0]["my_vote"] == 1


async def test_an_unknown_question_is_404(qa: QA) -> None:
    assert (await qa.client.get("/api/questions/12345")).status_code == 404


async def test_with_the_cache_off_every_get_builds_the_page(settings: Settings) -> None:
    async with running_qa(settings.replace(page_cache=False), migrate_on_start=False) as qa:
        asker = await qa.signup()
        q = await qa.ask(asker)
        assert (await page(qa, q["id"]))["title"] == q["title"]
        assert qa.context.pages is None
        assert lookups(qa, "l1", "hit") == 0


async def test_redis_shares_pages_between_instances_and_garbage_there_is_a_counted_miss(
    settings: Settings, redis_server: RedisServer
) -> None:
    shared = settings.replace(redis_url=redis_server.url)
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_qa(shared, migrate_on_start=False))
        b = await stack.enter_async_context(running_qa(shared, migrate_on_start=False))
        asker = await a.signup()
        q = await a.ask(asker)
        built = await page(a, q["id"])  # built by a, kept in its L1 and in Redis
        assert await page(b, q["id"]) == built
        assert lookups(b, "l2", "hit") == 1
        cache = b.context.pages
        assert cache is not None
        key = cache.redis_key(q["id"])
        redis = redis_server.client()
        good = redis.get(key)
        assert isinstance(good, bytes) and good.startswith(b"hp1 ")
        for garbage in (b"\x00\xff garbage", good.split(b"\n")[0] + b"\n{not json", b"hp1 x,y\n{}"):
            cache.local.discard(q["id"])
            redis.set(key, garbage)
            bad = lookups(b, "l2", "bad")
            assert await page(b, q["id"]) == built
            assert lookups(b, "l2", "bad") == bad + 1
        cache.local.discard(q["id"])
        redis.delete(key)
        redis.lpush(key, "a list, not a string")  # WRONGTYPE on GET: a Redis error, a miss
        assert await page(b, q["id"]) == built
        assert lookups(b, "l2", "error") >= 1


async def test_the_page_is_served_after_the_database_dropped_every_pooled_connection(
    settings: Settings, database_url: str
) -> None:
    """The pool does not ping before use (qasite/core/db.py): a read that finds its pooled
    connection dead (a restarted PostgreSQL) is tried once more on a new one."""
    if not database_url.startswith("postgres"):
        pytest.skip("SQLite has no server to lose")
    async with running_qa(settings, migrate_on_start=False) as qa:
        asker = await qa.signup()
        q = await qa.ask(asker)
        expected = await page(qa, q["id"])
        for _ in range(2):  # once through the stamp query, once with the page built
            conn = await asyncpg.connect(database_url, timeout=3)
            try:
                await conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await conn.close()
            assert await page(qa, q["id"]) == expected
            assert qa.context.pages is not None
            qa.context.pages.local.discard(q["id"])
