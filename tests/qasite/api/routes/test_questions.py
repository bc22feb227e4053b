"""Questions: ask, read, edit, delete (qasite/api/routes/questions.py and questions_list.py)."""

from __future__ import annotations

from tests.qasite.support import QA, error_of


async def test_asking_stores_the_question_with_rendered_sanitized_html(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(
        user,
        body="**bold** <script>alert(1)</script> [x](javascript:alert(1))",
        tags=["Python", "asyncio", "python"],
    )
    assert q["author_id"] == user.id
    assert "<strong>bold</strong>" in q["body_html"]
    assert "<script>" not in q["body_html"]
    assert 'href="javascript' not in q["body_html"]
    assert sorted(q["tags"]) == ["asyncio", "python"]
    r = await qa.client.get(f"/api/questions/{q['id']}")
    assert r.status_code == 200
    assert r.json()["body_html"] == q["body_html"]


async def test_a_new_question_is_announced_on_questions_new_and_each_tag(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user, title="Which event loop?", tags=["python", "asyncio"])
    await qa.settle()
    for channel in ("questions:new", "tag:python", "tag:asyncio"):
        [event] = qa.sink.on(channel)
        assert event["type"] == "question"
        assert event["id"] == q["id"]
        assert event["title"] == "Which event loop?"


async def test_reading_a_missing_question_is_404(qa: QA) -> None:
    r = await qa.client.get("/api/questions/999999")
    assert r.status_code == 404
    assert error_of(r)["reason"] == "not_found"


async def test_ids_out_of_range_are_422_not_500(qa: QA) -> None:
    for path in ("/api/questions/0", "/api/questions/99999999999999999999", "/api/questions/x"):
        assert (await qa.client.get(path)).status_code == 422, path


async def test_asking_needs_a_login(qa: QA) -> None:
    r = await qa.client.post("/api/questions", json={"title": "t" * 20, "body": "b", "tags": ["x"]})
    assert r.status_code == 401


async def test_invalid_questions_are_422(qa: QA) -> None:
    user = await qa.signup()
    good = {"title": "A reasonable title", "body": "body", "tags": ["python"]}
    for change in (
        {"title": "abc"},
        {"title": "x" * 151},
        {"body": ""},
        {"tags": []},
        {"tags": ["a", "b", "c", "d", "e", "f"]},
        {"tags": ["no spaces"]},
        {"tags": ["{braces}"]},
        {"body": "nul \x00 char"},
    ):
        r = await qa.client.post("/api/questions", json=good | change, headers=user.headers)
        assert r.status_code == 422, change
        assert error_of(r)["reason"] == "invalid"


async def test_the_owner_edits_a_question_and_the_edit_is_published(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    r = await qa.client.patch(
        f"/api/questions/{q['id']}",
        json={"body": "new *body*", "tags": ["rust"]},
        headers=user.headers,
    )
    assert r.status_code == 200
    assert r.json()["body_html"] == "<p>new <em>body</em></p>\n"
    assert r.json()["tags"] == ["rust"]
    assert r.json()["edit_version"] == 1
    await qa.settle()
    [edit] = qa.sink.of_type(f"question:{q['id']}", "edit")
    assert edit["version"] == 1
    assert edit["tags"] == ["rust"]
    assert edit["body_html"] == "<p>new <em>body</em></p>\n"


async def test_an_empty_edit_is_422(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    r = await qa.client.patch(f"/api/questions/{q['id']}", json={}, headers=user.headers)
    assert r.status_code == 422


async def test_someone_elses_question_cannot_be_edited_or_deleted(qa: QA) -> None:
    owner, other = await qa.signup(), await qa.signup()
    q = await qa.ask(owner)
    path = f"/api/questions/{q['id']}"
    r = await qa.client.patch(path, json={"title": "Hijacked title"}, headers=other.headers)
    assert r.status_code == 403
    assert error_of(r)["message"] == "this question is not yours"
    assert (await qa.client.delete(path, headers=other.headers)).status_code == 403
    assert (await qa.client.delete(path)).status_code == 401
    assert (await qa.client.get(path)).json()["title"] == q["title"]


async def test_editing_or_deleting_a_missing_question_is_404(qa: QA) -> None:
    user = await qa.signup()
    r = await qa.client.patch(
        "/api/questions/12345", json={"title": "Some title"}, headers=user.headers
    )
    assert r.status_code == 404
    assert (await qa.client.delete("/api/questions/12345", headers=user.headers)).status_code == 404


async def test_deleting_a_question_removes_its_answers_and_comments(qa: QA) -> None:
    owner, other = await qa.signup(), await qa.signup()
    q = await qa.ask(owner)
    a = await qa.answer(other, q["id"])
    await qa.client.post(
        f"/api/answers/{a['id']}/comments", json={"body": "hm"}, headers=owner.headers
    )
    r = await qa.client.delete(f"/api/questions/{q['id']}", headers=owner.headers)
    assert r.status_code == 204
    assert (await qa.client.get(f"/api/questions/{q['id']}")).status_code == 404
    assert (
        await qa.client.patch(f"/api/answers/{a['id']}", json={"body": "x"}, headers=other.headers)
    ).status_code == 404
    await qa.settle()
    assert qa.sink.of_type(f"question:{q['id']}", "deleted")[-1]["post"] == f"question:{q['id']}"


async def test_the_list_is_newest_first_with_a_cursor(qa: QA) -> None:
    user = await qa.signup()
    ids = [(await qa.ask(user, title=f"Question number {i}"))["id"] for i in range(5)]
    first = (await qa.client.get("/api/questions", params={"limit": 2})).json()
    assert [q["id"] for q in first["items"]] == ids[::-1][:2]
    second = (
        await qa.client.get("/api/questions", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [q["id"] for q in second["items"]] == ids[::-1][2:4]
    last = (
        await qa.client.get("/api/questions", params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()
    assert [q["id"] for q in last["items"]] == ids[:1]
    assert last["next_cursor"] is None
