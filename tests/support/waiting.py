"""Waiting in async tests for something another task makes true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

POLL_INTERVAL_S = 0.002
DEFAULT_TIMEOUT_S = 30.0
"""Generous: CI shares a loaded machine (a 5 s default failed once beside a CPU hog while a
subscribe was still on its way); a condition that holds returns as soon as it does."""


async def eventually(condition: Callable[[], bool], timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Return once *condition()* holds, checking every :data:`POLL_INTERVAL_S`.

    Fail the test when it still does not hold after *timeout_s*.
    """
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        await asyncio.sleep(POLL_INTERVAL_S)
