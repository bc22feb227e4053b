"""The embedded demo: a few live events so that a fresh clone shows something moving.

It publishes through the same bus as any publisher: a question whose score changes every
second (absolute score + version, state not deltas) and a new question every five seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import random

from herald_contract.bus import Bus, BusUnavailable
from herald_contract.envelope import pack_data


async def run_demo(bus: Bus, *, interval_s: float = 1.0) -> None:
    score = 0
    next_question = itertools.count(2)
    for tick in itertools.count(1):
        await asyncio.sleep(interval_s)
        score += random.choice((1, 1, 1, -1))
        try:
            await bus.publish(
                "question:1",
                pack_data({"type": "score", "post": "question:1", "score": score, "version": tick}),
            )
            if tick % 5 == 0:
                qid = next(next_question)
                await bus.publish(
                    "questions:new",
                    pack_data({"type": "question", "id": qid, "title": f"Demo question {qid}"}),
                )
        except BusUnavailable:
            continue
