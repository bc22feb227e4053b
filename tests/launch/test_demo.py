"""launch/demo.py: the demo publisher keeps question:1 and questions:new moving."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from herald_contract.errors import BusUnavailable
from launch.demo import run_demo
from tests.support.waiting import eventually


async def test_the_demo_publishes_scores_and_new_questions_and_survives_a_bus_that_is_down() -> (
    None
):
    published: list[tuple[str, Any]] = []
    refusals = 2

    async def publish(channel: str, data: Any) -> object:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise BusUnavailable("down for a moment")
        published.append((channel, data))
        return None

    demo = asyncio.ensure_future(run_demo(publish, interval_s=0))
    try:
        await eventually(lambda: any(ch == "questions:new" for ch, _ in published))
    finally:
        demo.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await demo
    scores = [data for ch, data in published if ch == "question:1"]
    assert [s["version"] for s in scores] == sorted(s["version"] for s in scores)
    assert all(s["type"] == "score" for s in scores)
