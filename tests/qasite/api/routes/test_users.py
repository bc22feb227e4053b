"""A user's public page data: GET /api/users/{id}, /api/users/{id}/answers, ?author= and ?count=."""

from __future__ import annotations

from tests.qasite.support import QA, error_of


async def test_a_profile_names_the_user_and_counts_their_posts_without_the_email(qa: QA) -> None:
    ada = await qa.signup(name="Ada")
    bob = await qa.signup(name="Bob")
    q = await qa.ask(ada)
    await qa.ask(ada, title="A second question here")
    await qa.answer(bob, q["id"])
    r = await qa.client.get(f"/api/users/{ada.id}")
    assert r.status_code == 200
    profile = r.json()
    assert (profile["display_name"], profile["question_count"], profile["answer_count"]) == (
        "Ada",
        2,
        0,
    )
    assert "created_at" in profile
    assert "email" not in profile and ada.email not in r.text
    assert (await qa.client.get(f"/api/users/{bob.id}")).json()["answer_count"] == 1


async def test_an_unknown_user_is_404_and_a_bad_id_422(qa: QA) -> None:
    for path in ("/api/users/999999", "/api/users/999999/answers"):
        r = await qa.client.get(path)
        assert r.status_code == 404, path
        assert error_of(r)["reason"] == "not_found"
    for path in ("/api/users/0", "/api/users/x", "/api/users/1/answers?before=0"):
        assert (await qa.client.get(path)).status_code == 422, path


async def test_a_users_answers_come_newest_first_with_their_question_one_page_at_a_time(
    qa: QA,
) -> None:
    ada = await qa.signup()
    bob = await qa.signup()
    first = await qa.ask(ada, title="The first question")
    second = await qa.ask(ada, title="The second question")
    a1 = await qa.answer(bob, first["id"])
    a2 = await qa.answer(bob, second["id"])
    await qa.answer(ada, second["id"])  # not Bob's
    r = await qa.client.post(f"/api/answers/{a1['id']}/accept", headers=ada.headers)
    assert r.status_code == 200, r.text
    page = (await qa.client.get(f"/api/users/{bob.id}/answers?limit=1")).json()
    assert [(i["id"], i["question_title"]) for i in page["items"]] == [
        (a2["id"], "The second question")
    ]
    rest = await qa.client.get(f"/api/users/{bob.id}/answers?before={page['next_before']}")
    assert [(i["id"], i["accepted"]) for i in rest.json()["items"]] == [(a1["id"], True)]
    assert rest.json()["next_before"] is None


async def test_the_list_filters_by_author_and_counts_every_match_on_request(qa: QA) -> None:
    ada = await qa.signup()
    bob = await qa.signup()
    for n in range(3):
        await qa.ask(ada, title=f"Ada asks question {n}", tags=["python"])
    await qa.ask(bob, title="Bob asks a question", tags=["python"])
    r = await qa.client.get(f"/api/questions?author={ada.id}&limit=2&count=true")
    page = r.json()
    assert [i["author_id"] for i in page["items"]] == [ada.id, ada.id]
    assert page["total"] == 3
    assert (await qa.client.get("/api/questions")).json()["total"] is None
    counted = await qa.client.get("/api/questions?q=asks&tag=python&count=true&limit=1")
    assert counted.json()["total"] == 4
    assert (await qa.client.get("/api/questions?tag=nosuchtag&count=true")).json()["total"] == 0
    nxt = await qa.client.get(
        f"/api/questions?author={ada.id}&limit=2&cursor={page['next_cursor']}"
    )
    assert [i["title"] for i in nxt.json()["items"]] == ["Ada asks question 0"]
    other = await qa.client.get(f"/api/questions?author={bob.id}&cursor={page['next_cursor']}")
    assert other.status_code == 422, "a cursor is bound to its author filter"
