"""Waiting in async tests for something another task makes true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

POLL_INTERVAL_S = 0.002


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Return once *condition()* holds, checking every :data:`POLL_INTERVAL_S`.

    Fail the test when it still does not hold after *timeout_s*.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(POLL_INTERVAL_S)
