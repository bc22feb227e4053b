"""Votes (qasite/api/routes/votes.py and qasite/domain/votes.py)."""

from __future__ import annotations

import asyncio

from tests.qasite.support import QA, error_of


async def test_upvote_downvote_change_and_retract_keep_the_score_right(qa: QA) -> None:
    asker, voter = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    path = f"/api/questions/{q['id']}/vote"
    up = await qa.client.put(path, json={"value": 1}, headers=voter.headers)
    assert up.json() == {"post": f"question:{q['id']}", "score": 1, "version": 1, "my_vote": 1}
    again = await qa.client.put(path, json={"value": 1}, headers=voter.headers)
    assert again.json()["score"] == 1
    assert again.json()["version"] == 1
    down = await qa.client.put(path, json={"value": -1}, headers=voter.headers)
    assert (down.json()["score"], down.json()["version"]) == (-1, 2)
    retract = await qa.client.delete(path, headers=voter.headers)
    assert retract.json() == {"post": f"question:{q['id']}", "score": 0, "version": 3, "my_vote": 0}
    assert (await qa.client.get(f"/api/questions/{q['id']}")).json()["score"] == 0
    await qa.settle()
    scores = qa.sink.of_type(f"question:{q['id']}", "score")
    assert [(e["score"], e["version"]) for e in scores] == [(1, 1), (-1, 2), (0, 3)]


async def test_votes_on_answers_go_to_the_question_channel(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    r = await qa.client.put(
        f"/api/answers/{a['id']}/vote", json={"value": -1}, headers=asker.headers
    )
    assert r.json()["score"] == -1
    r = await qa.client.delete(f"/api/answers/{a['id']}/vote", headers=asker.headers)
    assert r.json()["score"] == 0
    await qa.settle()
    events = qa.sink.of_type(f"question:{q['id']}", "score")
    assert [(e["post"], e["score"]) for e in events] == [
        (f"answer:{a['id']}", -1),
        (f"answer:{a['id']}", 0),
    ]


async def test_you_cannot_vote_on_your_own_posts(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    r = await qa.client.put(
        f"/api/questions/{q['id']}/vote", json={"value": 1}, headers=asker.headers
    )
    assert r.status_code == 403
    assert error_of(r)["message"] == "you cannot vote on your own post"
    r = await qa.client.put(
        f"/api/answers/{a['id']}/vote", json={"value": 1}, headers=answerer.headers
    )
    assert r.status_code == 403


async def test_votes_need_a_login_a_post_and_a_value_of_one_or_minus_one(qa: QA) -> None:
    asker, voter = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    path = f"/api/questions/{q['id']}/vote"
    assert (await qa.client.put(path, json={"value": 1})).status_code == 401
    for value in (0, 2, "1", None, 1.5):
        r = await qa.client.put(path, json={"value": value}, headers=voter.headers)
        assert r.status_code == 422, value
    r = await qa.client.put("/api/questions/999/vote", json={"value": 1}, headers=voter.headers)
    assert r.status_code == 404
    assert (
        await qa.client.delete("/api/answers/999/vote", headers=voter.headers)
    ).status_code == 404


async def test_concurrent_voters_leave_a_consistent_score_and_versions(qa: QA) -> None:
    asker = await qa.signup()
    voters = [await qa.signup() for _ in range(12)]
    q = await qa.ask(asker)
    path = f"/api/questions/{q['id']}/vote"

    async def vote(i: int, user_headers: dict[str, str]) -> int:
        r = await qa.client.put(path, json={"value": 1 if i % 3 else -1}, headers=user_headers)
        assert r.status_code == 200, r.text
        return int(r.json()["version"])

    versions = await asyncio.gather(*(vote(i, v.headers) for i, v in enumerate(voters)))
    expected = sum(1 if i % 3 else -1 for i in range(len(voters)))
    assert sorted(versions) == list(range(1, len(voters) + 1))
    page = (await qa.client.get(f"/api/questions/{q['id']}")).json()
    assert (page["score"], page["score_version"]) == (expected, len(voters))
    await qa.settle()
    events = qa.sink.of_type(f"question:{q['id']}", "score")
    assert sorted(e["version"] for e in events) == list(range(1, len(voters) + 1))
    newest = max(events, key=lambda e: e["version"])
    assert newest["score"] == expected


async def test_one_user_voting_twice_at_once_counts_once(qa: QA) -> None:
    asker, voter = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    path = f"/api/questions/{q['id']}/vote"
    replies = await asyncio.gather(
        *(qa.client.put(path, json={"value": 1}, headers=voter.headers) for _ in range(6))
    )
    assert {r.status_code for r in replies} <= {200, 409}
    assert (await qa.client.get(f"/api/questions/{q['id']}")).json()["score"] == 1
