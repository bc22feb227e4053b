"""Every command gets one answer: a subscribe withdrawn by an unsubscribe before the worker
answered it is answered 410 (`not_subscribed`), before the unsubscribe's own reply
(docs/protocol.md, error codes). Found by bench/abuse.py: the subscribe's id went unanswered."""

from __future__ import annotations

import json

from tests.support.raw_ws import OP_TEXT, client_frame, raw_connection
from tests.support.worker import metric, running_worker


def command(payload: dict[str, object]) -> bytes:
    return client_frame(OP_TEXT, json.dumps(payload).encode())


async def test_a_subscribe_withdrawn_before_its_answer_is_answered_410_then_the_unsubscribe() -> (
    None
):
    async with running_worker() as worker, raw_connection(worker.port) as conn:
        await conn.open_websocket()
        await conn.send(command({"op": "connect", "id": 1}))
        _, connected = await conn.read_frame()
        assert json.loads(connected)["type"] == "reply"
        # Both in one write: the unsubscribe is read before the subscribe's history read runs.
        await conn.send(
            command({"op": "subscribe", "id": 2, "channel": "question:1"})
            + command({"op": "unsubscribe", "id": 3, "channel": "question:1"})
        )
        answers = [json.loads((await conn.read_frame())[1]) for _ in range(2)]
        assert answers[0]["type"] == "error"
        assert (answers[0]["id"], answers[0]["code"]) == (2, 410)
        assert answers[1] == {"type": "reply", "id": 3, "result": {}}
        # The connection goes on: the channel can be subscribed again and is answered.
        await conn.send(command({"op": "subscribe", "id": 4, "channel": "question:1"}))
        again = json.loads((await conn.read_frame())[1])
        assert (again["type"], again["id"]) == ("reply", 4)
        assert metric(worker, "herald_errors_total", code="410") == 1
