"""Big posts and the bus's size limit (qasite/domain/events.py, herald_contract/envelope.py).

The bus takes at most 64 KiB of data per publication, counted as the UTF-8 bytes of the JSON
the fleet sends (socketsrv sends ``json.dumps(..., ensure_ascii=False)``). A post whose event
would not fit is still written (201/200): its event goes out without the body, with
``"reload": true``, and the live pages fetch the post over HTTP. Issue 11, item 13: an answer
of 11,000 non-ASCII characters used to fail with a 500 and the write was lost.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from herald_contract.envelope import MAX_DATA_BYTES, pack_data
from herald_contract.errors import InvalidPayload
from qasite.core.settings import Settings
from tests.qasite.domain.test_relay import history
from tests.qasite.support import QA, running_qa
from tests.support.redis_server import RedisServer

ELEVEN_THOUSAND = "é" * 11_000
"""Two UTF-8 bytes each, six characters each as ASCII-escaped JSON (66,000 > 64 KiB)."""
TOO_BIG = "漢" * 29_000
"""Three UTF-8 bytes each: 87,000 bytes, more than the bus takes whatever the measure."""


def wire_bytes(data: Any) -> int:
    return len(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode())


def test_the_size_limit_counts_the_utf8_bytes_clients_receive() -> None:
    data = {"text": ELEVEN_THOUSAND}
    assert wire_bytes(data) < MAX_DATA_BYTES < len(json.dumps(data, separators=(",", ":")))
    pack_data(data)
    size = wire_bytes(data)
    pack_data(data, max_bytes=size)
    with pytest.raises(InvalidPayload, match=f"more than {size - 1}"):
        pack_data(data, max_bytes=size - 1)


async def test_an_answer_of_11000_non_ascii_characters_is_written_and_published_whole(
    qa: QA,
) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    r = await qa.client.post(
        f"/api/questions/{q['id']}/answers",
        json={"body": ELEVEN_THOUSAND},
        headers=answerer.headers,
    )
    assert r.status_code == 201, r.text
    await qa.settle()
    (event,) = qa.sink.of_type(f"question:{q['id']}", "answer")
    assert event["answer"]["id"] == r.json()["id"]
    assert ELEVEN_THOUSAND in event["answer"]["body_html"]
    assert "reload" not in event


async def test_an_answer_too_big_for_the_bus_is_written_and_its_event_says_reload(qa: QA) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    r = await qa.client.post(
        f"/api/questions/{q['id']}/answers", json={"body": TOO_BIG}, headers=answerer.headers
    )
    assert r.status_code == 201, r.text
    answer_id = r.json()["id"]
    assert TOO_BIG in (await qa.client.get(f"/api/questions/{q['id']}")).text
    await qa.settle()
    (event,) = qa.sink.of_type(f"question:{q['id']}", "answer")
    assert event["answer"]["id"] == answer_id
    assert event["answer"]["body_html"] is None
    assert event["reload"] is True
    assert event["answer_count"] == 1
    assert wire_bytes(event) < 1024


@pytest.mark.parametrize("body", [ELEVEN_THOUSAND, TOO_BIG], ids=["11000", "too-big"])
async def test_an_edit_of_any_size_is_written_and_its_event_published(qa: QA, body: str) -> None:
    asker, answerer = await qa.signup(), await qa.signup()
    q = await qa.ask(asker)
    a = await qa.answer(answerer, q["id"])
    r = await qa.client.patch(
        f"/api/answers/{a['id']}", json={"body": body}, headers=answerer.headers
    )
    assert r.status_code == 200, r.text
    r = await qa.client.patch(
        f"/api/questions/{q['id']}", json={"body": body}, headers=asker.headers
    )
    assert r.status_code == 200, r.text
    await qa.settle()
    edits = qa.sink.of_type(f"question:{q['id']}", "edit")
    assert [e["post"] for e in edits] == [f"answer:{a['id']}", f"question:{q['id']}"]
    for event in edits:
        assert event["version"] == 1
        if body is TOO_BIG:
            assert event["body_html"] is None
            assert event["reload"] is True
        else:
            assert body in event["body_html"]
            assert "reload" not in event
    assert edits[1]["title"] == q["title"]


async def test_big_events_reach_redis_whole_or_degraded(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with running_qa(settings.replace(redis_url=redis_server.url), record=False) as qa:
        asker, answerer = await qa.signup(), await qa.signup()
        q = await qa.ask(asker)
        for body in (ELEVEN_THOUSAND, TOO_BIG):
            r = await qa.client.post(
                f"/api/questions/{q['id']}/answers", json={"body": body}, headers=answerer.headers
            )
            assert r.status_code == 201, r.text
        await qa.settle()
        answers = [
            data
            for _, _, data in history(redis_server, f"question:{q['id']}")
            if data["type"] == "answer"
        ]
        assert ELEVEN_THOUSAND in answers[0]["answer"]["body_html"]
        assert answers[1]["answer"]["body_html"] is None
        assert answers[1]["reload"] is True
        assert b"herald_qa_events_degraded_total 1.0" in (await qa.client.get("/metrics")).content
