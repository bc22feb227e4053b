"""What the ask, answer and edit pages need from the API (issue 13, items 3 and 4): a preview
of a body (qasite/api/routes/drafts.py), tag suggestions, your vote in the question page,
when a post was edited, and an event for an attached image."""

from __future__ import annotations

import datetime as dt

from tests.qasite.support import QA, error_of, png_bytes


def at(iso: str) -> dt.datetime:
    return dt.datetime.fromisoformat(iso)


async def test_a_preview_is_the_html_a_posted_body_would_have(qa: QA) -> None:
    writer = await qa.signup()
    body = "# Title\n\n```\nx = 1\n```\n\n<script>alert(1)</script> [x](javascript:alert(1))"
    r = await qa.client.post("/api/preview", json={"body": body}, headers=writer.headers)
    assert r.status_code == 200, r.text
    posted = await qa.ask(writer, body=body)
    assert r.json() == {"body_html": posted["body_html"]}
    assert "<script>" not in r.json()["body_html"]
    assert "href" not in r.json()["body_html"]  # a javascript: link is left as text


async def test_a_preview_needs_a_signed_in_user_and_a_valid_body(qa: QA) -> None:
    anonymous = await qa.client.post("/api/preview", json={"body": "hello"})
    assert anonymous.status_code == 401
    writer = await qa.signup()
    for bad in ({"body": ""}, {"body": "x" * 30_001}, {}, {"body": "a", "extra": 1}):
        r = await qa.client.post("/api/preview", json=bad, headers=writer.headers)
        assert r.status_code == 422, bad


async def test_tag_suggestions_are_existing_tags_by_prefix_the_most_used_first(qa: QA) -> None:
    asker = await qa.signup()
    await qa.ask(asker, tags=["python", "pytest"])
    await qa.ask(asker, tags=["pytest"])
    await qa.ask(asker, tags=["rust"])
    r = await qa.client.get("/api/tag-suggestions", params={"prefix": "py"})
    assert r.status_code == 200, r.text
    assert r.json() == [{"name": "pytest", "questions": 2}, {"name": "python", "questions": 1}]
    r = await qa.client.get("/api/tag-suggestions", params={"prefix": "py", "limit": 1})
    assert [t["name"] for t in r.json()] == ["pytest"]
    r = await qa.client.get("/api/tag-suggestions", params={"prefix": "go"})
    assert r.json() == []


async def test_tag_suggestions_refuse_a_prefix_outside_the_tag_alphabet(qa: QA) -> None:
    for bad in ({"prefix": "%"}, {"prefix": "a_b"}, {"prefix": ""}, {}, {"prefix": "x" * 36}):
        r = await qa.client.get("/api/tag-suggestions", params=bad)
        assert r.status_code == 422, bad
    r = await qa.client.get("/api/tag-suggestions", params={"prefix": "py", "limit": 21})
    assert r.status_code == 422


async def test_the_question_page_carries_your_vote_on_each_post(qa: QA) -> None:
    asker, answerer, voter = await qa.signup(), await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a1 = await qa.answer(answerer, q["id"])
    a2 = await qa.answer(answerer, q["id"], "Use open().")
    await qa.client.put(f"/api/questions/{q['id']}/vote", json={"value": 1}, headers=voter.headers)
    await qa.client.put(f"/api/answers/{a2['id']}/vote", json={"value": -1}, headers=voter.headers)
    page = (await qa.client.get(f"/api/questions/{q['id']}", headers=voter.headers)).json()
    assert page["my_vote"] == 1
    assert {a["id"]: a["my_vote"] for a in page["answers"]} == {a1["id"]: 0, a2["id"]: -1}
    others = (await qa.client.get(f"/api/questions/{q['id']}", headers=asker.headers)).json()
    assert others["my_vote"] == 0
    assert [a["my_vote"] for a in others["answers"]] == [0, 0]
    anonymous = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert anonymous["my_vote"] == 0
    await qa.client.delete(f"/api/questions/{q['id']}/vote", headers=voter.headers)
    page = (await qa.client.get(f"/api/questions/{q['id']}", headers=voter.headers)).json()
    assert page["my_vote"] == 0


async def test_edited_at_is_null_until_an_edit_and_travels_in_the_edit_events(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    c = (
        await qa.client.post(
            f"/api/answers/{a['id']}/comments", json={"body": "why?"}, headers=asker.headers
        )
    ).json()
    await qa.client.post(f"/api/answers/{a['id']}/accept", headers=asker.headers)
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["edited_at"] is None  # an accept is not an edit
    assert page["answers"][0]["edited_at"] is None
    assert page["answers"][0]["comments"][0]["edited_at"] is None

    edited_q = await qa.client.patch(
        f"/api/questions/{q['id']}", json={"body": "Better."}, headers=asker.headers
    )
    edited_a = await qa.client.patch(
        f"/api/answers/{a['id']}", json={"body": "Better."}, headers=answerer.headers
    )
    edited_c = await qa.client.patch(
        f"/api/comments/{c['id']}", json={"body": "why not?"}, headers=asker.headers
    )
    for r in (edited_a, edited_c):
        assert r.json()["edited_at"] == r.json()["updated_at"]
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["answers"][0]["edited_at"] == edited_a.json()["updated_at"]
    assert page["answers"][0]["comments"][0]["edited_at"] == edited_c.json()["updated_at"]
    await qa.settle()
    channel = f"question:{q['id']}"
    edits = {e["post"]: e for e in qa.sink.of_type(channel, "edit")}
    assert edits[f"answer:{a['id']}"]["edited_at"] is not None
    question_edit = edits[f"question:{q['id']}"]["edited_at"]
    assert at(question_edit) == at(edited_q.json()["updated_at"]) == at(page["edited_at"])
    (comment_edit,) = qa.sink.of_type(channel, "comment_edit")
    assert comment_edit["comment"]["edited_at"] is not None


async def test_an_attached_image_is_announced_on_the_question_channel(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    r = await qa.client.post(
        f"/api/answers/{a['id']}/attachments", content=png_bytes(), headers=answerer.headers
    )
    assert r.status_code == 201, r.text
    await qa.settle()
    (event,) = qa.sink.of_type(f"question:{q['id']}", "attachment")
    assert event == {
        "type": "attachment",
        "question": q["id"],
        "post": f"answer:{a['id']}",
        "attachment": {
            "id": r.json()["id"],
            "url": r.json()["url"],
            "content_type": "image/png",
            "width": 4,
            "height": 3,
        },
    }


async def test_a_refused_image_announces_nothing(qa: QA) -> None:
    asker = await qa.signup()
    q = await qa.ask(asker)
    r = await qa.client.post(
        f"/api/questions/{q['id']}/attachments", content=b"not an image", headers=asker.headers
    )
    assert r.status_code == 415, error_of(r)
    await qa.settle()
    assert qa.sink.of_type(f"question:{q['id']}", "attachment") == []
