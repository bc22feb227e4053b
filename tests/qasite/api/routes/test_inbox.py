"""The inbox (qasite/api/routes/inbox.py)."""

from __future__ import annotations

from tests.qasite.support import QA, User


async def _answered(qa: QA, asker: User, times: int) -> None:
    answerer = await qa.signup()
    q = await qa.ask(asker)
    for i in range(times):
        await qa.answer(answerer, q["id"], body=f"answer {i}")


async def test_the_inbox_lists_items_newest_first_with_the_unread_count(qa: QA) -> None:
    asker = await qa.signup()
    await _answered(qa, asker, 3)
    r = await qa.client.get("/api/inbox", headers=asker.headers)
    assert r.status_code == 200
    page = r.json()
    assert page["unread"] == 3
    assert [i["excerpt"] for i in page["items"]] == ["answer 2", "answer 1", "answer 0"]
    assert all(not i["read"] and i["kind"] == "answer" for i in page["items"])
    first = (await qa.client.get("/api/inbox", params={"limit": 2}, headers=asker.headers)).json()
    rest = (
        await qa.client.get(
            "/api/inbox", params={"limit": 2, "before": first["next_cursor"]}, headers=asker.headers
        )
    ).json()
    assert [i["excerpt"] for i in rest["items"]] == ["answer 0"]
    assert rest["next_cursor"] is None


async def test_marking_one_read_lowers_the_count_and_publishes_it(qa: QA) -> None:
    asker = await qa.signup()
    await _answered(qa, asker, 2)
    items = (await qa.client.get("/api/inbox", headers=asker.headers)).json()["items"]
    r = await qa.client.post(f"/api/inbox/{items[0]['id']}/read", headers=asker.headers)
    assert r.json() == {"unread": 1}
    again = await qa.client.post(f"/api/inbox/{items[0]['id']}/read", headers=asker.headers)
    assert again.json() == {"unread": 1}
    assert (await qa.client.get("/api/inbox/unread-count", headers=asker.headers)).json() == {
        "unread": 1
    }
    await qa.settle()
    assert qa.sink.of_type(f"user:{asker.id}", "unread") == [{"type": "unread", "unread": 1}]


async def test_marking_all_read_zeroes_the_count(qa: QA) -> None:
    asker = await qa.signup()
    await _answered(qa, asker, 3)
    assert (await qa.client.post("/api/inbox/read-all", headers=asker.headers)).json() == {
        "unread": 0
    }
    page = (await qa.client.get("/api/inbox", headers=asker.headers)).json()
    assert page["unread"] == 0
    assert all(i["read"] for i in page["items"])
    await qa.settle()
    assert qa.sink.of_type(f"user:{asker.id}", "unread")[-1]["unread"] == 0


async def test_someone_elses_inbox_item_is_not_found(qa: QA) -> None:
    asker, stranger = await qa.signup(), await qa.signup()
    await _answered(qa, asker, 1)
    item = (await qa.client.get("/api/inbox", headers=asker.headers)).json()["items"][0]
    r = await qa.client.post(f"/api/inbox/{item['id']}/read", headers=stranger.headers)
    assert r.status_code == 404
    assert (await qa.client.get("/api/inbox", headers=stranger.headers)).json()["items"] == []


async def test_the_inbox_needs_a_login(qa: QA) -> None:
    for method, path in (
        ("GET", "/api/inbox"),
        ("GET", "/api/inbox/unread-count"),
        ("POST", "/api/inbox/1/read"),
        ("POST", "/api/inbox/read-all"),
    ):
        assert (await qa.client.request(method, path)).status_code == 401, path


async def test_deleting_a_post_takes_its_items_and_publishes_the_new_count(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    comment = (
        await qa.client.post(
            f"/api/answers/{a['id']}/comments", json={"body": "hm"}, headers=asker.headers
        )
    ).json()
    assert (await qa.client.get("/api/inbox/unread-count", headers=answerer.headers)).json() == {
        "unread": 1
    }
    await qa.client.delete(f"/api/comments/{comment['id']}", headers=asker.headers)
    await qa.client.delete(f"/api/answers/{a['id']}", headers=answerer.headers)
    await qa.settle()
    assert qa.sink.of_type(f"user:{answerer.id}", "unread") == [{"type": "unread", "unread": 0}]
    assert qa.sink.of_type(f"user:{asker.id}", "unread") == [{"type": "unread", "unread": 0}]
    assert (await qa.client.get("/api/inbox", headers=asker.headers)).json()["items"] == []


# --- issue 13, item 6: live items as loaded ones; a viewed question's items read ----------


async def test_a_live_item_carries_what_the_list_shows_actor_title_and_plain_excerpt(
    qa: QA,
) -> None:
    asker = await qa.signup()
    answerer = await qa.signup(name="Grace")
    q = await qa.ask(asker, title="How do I read a file?")
    markdown = "Use **pathlib**: [docs](https://docs.python.org) and `Path.read_text()`\n\n- fast"
    await qa.answer(answerer, q["id"], body=markdown)
    await qa.settle()
    live = qa.sink.of_type(f"user:{asker.id}", "inbox")[-1]["item"]
    loaded = (await qa.client.get("/api/inbox", headers=asker.headers)).json()["items"][0]
    plain = "Use pathlib: docs and Path.read_text() fast"
    assert (live["actor_name"], live["question_title"], live["excerpt"]) == (
        "Grace",
        "How do I read a file?",
        plain,
    )
    assert (loaded["actor_name"], loaded["question_title"], loaded["excerpt"]) == (
        "Grace",
        "How do I read a file?",
        plain,
    )


async def test_viewing_a_question_marks_its_items_read_and_publishes_the_count(qa: QA) -> None:
    asker = await qa.signup()
    answerer = await qa.signup()
    first, second = await qa.ask(asker), await qa.ask(asker, title="Another question here")
    await qa.answer(answerer, first["id"], body="one")
    await qa.answer(answerer, first["id"], body="two")
    await qa.answer(answerer, second["id"], body="three")
    path = f"/api/inbox/questions/{first['id']}/read"
    r = await qa.client.post(path, headers=asker.headers)
    assert r.json() == {"unread": 1}
    await qa.settle()
    assert qa.sink.of_type(f"user:{asker.id}", "unread")[-1]["unread"] == 1
    published = len(qa.sink.on(f"user:{asker.id}"))
    assert (await qa.client.post(path, headers=asker.headers)).json() == {"unread": 1}
    await qa.settle()
    assert len(qa.sink.on(f"user:{asker.id}")) == published  # nothing changed, nothing sent
    items = (await qa.client.get("/api/inbox", headers=asker.headers)).json()["items"]
    assert [(i["excerpt"], i["read"]) for i in items] == [
        ("three", False),
        ("two", True),
        ("one", True),
    ]


async def test_marking_a_question_read_needs_a_login(qa: QA) -> None:
    assert (await qa.client.post("/api/inbox/questions/1/read")).status_code == 401
