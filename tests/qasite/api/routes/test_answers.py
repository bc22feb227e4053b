"""Answers and accepting one (qasite/api/routes/answers.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx

from tests.qasite.support import QA, User, assert_only_the_author_changes, error_of


async def test_an_answer_appears_on_the_question_and_is_published(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"], body="Use `pathlib`.")
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["answer_count"] == 1
    assert [x["id"] for x in page["answers"]] == [a["id"]]
    await qa.settle()
    [event] = qa.sink.of_type(f"question:{q['id']}", "answer")
    assert event["answer"]["id"] == a["id"]
    assert event["answer"]["body_html"] == "<p>Use <code>pathlib</code>.</p>\n"
    assert event["answer_count"] == 1


async def test_the_asker_gets_an_inbox_item_and_unread_count_for_an_answer(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup(name="Grace")
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"], body="An answer")
    await qa.settle()
    [event] = qa.sink.of_type(f"user:{asker.id}", "inbox")
    assert event["item"]["kind"] == "answer"
    assert event["item"]["answer"] == a["id"]
    assert event["item"]["actor_name"] == "Grace"
    assert event["unread"] == 1
    assert qa.sink.on(f"user:{answerer.id}") == []


async def test_answering_your_own_question_adds_no_inbox_item(qa: QA) -> None:
    asker = await qa.signup()
    q = await qa.ask(asker)
    await qa.answer(asker, q["id"])
    r = await qa.client.get("/api/inbox/unread-count", headers=asker.headers)
    assert r.json() == {"unread": 0}


async def test_answering_a_missing_question_is_404(qa: QA) -> None:
    user = await qa.signup()
    r = await qa.client.post(
        "/api/questions/4242/answers", json={"body": "x"}, headers=user.headers
    )
    assert r.status_code == 404


async def test_only_the_author_edits_or_deletes_an_answer(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    path = f"/api/answers/{a['id']}"
    edited = await assert_only_the_author_changes(qa, path, answerer, asker, "better")
    assert edited["edit_version"] == 1
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["answers"] == []
    assert page["answer_count"] == 0
    await qa.settle()
    [gone] = qa.sink.of_type(f"question:{q['id']}", "deleted")
    assert gone == {
        "type": "deleted",
        "question": q["id"],
        "post": f"answer:{a['id']}",
        "answer_count": 0,
    }


async def test_the_asker_accepts_an_answer_and_everyone_hears_of_it(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    r = await qa.client.post(f"/api/answers/{a['id']}/accept", headers=asker.headers)
    assert r.status_code == 200
    assert r.json()["accepted_answer_id"] == a["id"]
    assert r.json()["answers"][0]["accepted"] is True
    await qa.settle()
    [accepted] = qa.sink.of_type(f"question:{q['id']}", "accepted")
    assert accepted["answer"] == a["id"]
    [inbox] = qa.sink.of_type(f"user:{answerer.id}", "inbox")
    assert inbox["item"]["kind"] == "accepted"


async def test_only_the_asker_may_accept(qa: QA) -> None:
    asker, answerer, other = await qa.signup(), await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    for user in (answerer, other):
        r = await qa.client.post(f"/api/answers/{a['id']}/accept", headers=user.headers)
        assert r.status_code == 403
        assert "author" in error_of(r)["message"]
    assert (await qa.client.post(f"/api/answers/{a['id']}/accept")).status_code == 401
    assert (
        await qa.client.post("/api/answers/999/accept", headers=asker.headers)
    ).status_code == 404


async def test_accepting_another_answer_replaces_the_first_and_unaccept_clears_it(qa: QA) -> None:
    asker, one, two = await qa.signup(), await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a1, a2 = await qa.answer(one, q["id"]), await qa.answer(two, q["id"])
    await qa.client.post(f"/api/answers/{a1['id']}/accept", headers=asker.headers)
    r = await qa.client.post(f"/api/answers/{a2['id']}/accept", headers=asker.headers)
    assert r.json()["accepted_answer_id"] == a2["id"]
    r = await qa.client.delete(f"/api/answers/{a2['id']}/accept", headers=asker.headers)
    assert r.json()["accepted_answer_id"] is None
    await qa.settle()
    events = qa.sink.of_type(f"question:{q['id']}", "accepted")
    assert [e["answer"] for e in events] == [a1["id"], a2["id"], None]
    assert [e["version"] for e in events] == sorted(e["version"] for e in events)


async def test_deleting_the_accepted_answer_clears_the_acceptance(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    await qa.client.post(f"/api/answers/{a['id']}/accept", headers=asker.headers)
    await qa.client.delete(f"/api/answers/{a['id']}", headers=answerer.headers)
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["accepted_answer_id"] is None


async def test_concurrent_writes_on_one_question_lock_in_order_and_stay_consistent(qa: QA) -> None:
    asker = await qa.signup()
    others = [await qa.signup() for _ in range(4)]
    q = await qa.ask(asker)
    answers = [await qa.answer(user, q["id"], body=f"answer {i}") for i, user in enumerate(others)]

    def writes(i: int, user: User, answer: dict[str, Any]) -> list[Awaitable[httpx.Response]]:
        client, a = qa.client, answer["id"]
        return [
            client.patch(f"/api/answers/{a}", json={"body": f"edit {i}"}, headers=user.headers),
            client.post(f"/api/answers/{a}/comments", json={"body": "c"}, headers=asker.headers),
            client.put(f"/api/answers/{a}/vote", json={"value": 1}, headers=asker.headers),
            client.patch(
                f"/api/questions/{q['id']}", json={"body": f"q {i}"}, headers=asker.headers
            ),
            client.post(
                f"/api/questions/{q['id']}/answers", json={"body": "more"}, headers=user.headers
            ),
            client.delete(f"/api/answers/{a}", headers=user.headers)
            if i % 2
            else client.get("/healthz"),
        ]

    replies = await asyncio.gather(
        *(
            call
            for i, (u, a) in enumerate(zip(others, answers, strict=True))
            for call in writes(i, u, a)
        )
    )
    unexpected = [
        (r.request.method, r.request.url.path, r.status_code, r.text)
        for r in replies
        if r.status_code not in (200, 201, 204, 404, 409, 503)
    ]
    assert unexpected == []
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["answer_count"] == len(page["answers"])
    assert page["edit_version"] == sum(
        1 for r in replies if r.status_code == 200 and r.json().get("title") == q["title"]
    )


async def test_the_id_of_a_deleted_answer_is_never_given_to_a_new_one(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    first = await qa.answer(answerer, q["id"])
    await qa.client.delete(f"/api/answers/{first['id']}", headers=answerer.headers)
    second = await qa.answer(asker, q["id"])
    assert second["id"] > first["id"]
