"""Comments on questions and answers (qasite/api/routes/comments.py)."""

from __future__ import annotations

import datetime as dt

from tests.qasite.support import QA, assert_only_the_author_changes


async def test_a_comment_on_a_question_is_shown_published_and_lands_in_the_askers_inbox(
    qa: QA,
) -> None:
    asker, commenter = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    r = await qa.client.post(
        f"/api/questions/{q['id']}/comments",
        json={"body": "  Which version?  "},
        headers=commenter.headers,
    )
    assert r.status_code == 201
    comment = r.json()
    assert comment["body"] == "Which version?"
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert [c["id"] for c in page["comments"]] == [comment["id"]]
    await qa.settle()
    [event] = qa.sink.of_type(f"question:{q['id']}", "comment")
    assert event["post"] == f"question:{q['id']}"
    assert event["comment"]["body"] == "Which version?"
    [inbox] = qa.sink.of_type(f"user:{asker.id}", "inbox")
    assert inbox["item"]["kind"] == "comment"
    assert inbox["item"]["comment"] == comment["id"]


async def test_a_comment_on_an_answer_notifies_the_answerer(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    r = await qa.client.post(
        f"/api/answers/{a['id']}/comments", json={"body": "Thanks!"}, headers=asker.headers
    )
    assert r.status_code == 201
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert page["comments"] == []
    assert [c["body"] for c in page["answers"][0]["comments"]] == ["Thanks!"]
    await qa.settle()
    [event] = qa.sink.of_type(f"question:{q['id']}", "comment")
    assert event["post"] == f"answer:{a['id']}"
    assert qa.sink.of_type(f"user:{answerer.id}", "inbox")[0]["item"]["kind"] == "comment"


async def test_comments_on_missing_posts_are_404_and_bad_bodies_422(qa: QA) -> None:
    user = await qa.signup()
    q = await qa.ask(user)
    for path in ("/api/questions/777/comments", "/api/answers/777/comments"):
        assert (
            await qa.client.post(path, json={"body": "x"}, headers=user.headers)
        ).status_code == 404
    for body in ("", "   ", "x" * 601):
        r = await qa.client.post(
            f"/api/questions/{q['id']}/comments", json={"body": body}, headers=user.headers
        )
        assert r.status_code == 422


async def test_only_the_author_edits_or_deletes_a_comment(qa: QA) -> None:
    asker, commenter = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    c = (
        await qa.client.post(
            f"/api/questions/{q['id']}/comments", json={"body": "first"}, headers=commenter.headers
        )
    ).json()
    path = f"/api/comments/{c['id']}"
    edited = await assert_only_the_author_changes(qa, path, commenter, asker, "second")
    assert edited["edit_version"] == 1
    assert (await qa.client.delete(path, headers=commenter.headers)).status_code == 404
    await qa.settle()
    [edit] = qa.sink.of_type(f"question:{q['id']}", "comment_edit")
    edited_at = edit["comment"].pop("edited_at")
    assert edit["comment"] == {"id": c["id"], "body": "second", "version": 1}
    assert dt.datetime.fromisoformat(edited_at) == dt.datetime.fromisoformat(edited["edited_at"])
    assert qa.sink.of_type(f"question:{q['id']}", "deleted")[0]["post"] == f"comment:{c['id']}"
