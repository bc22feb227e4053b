"""Fixtures of the socketsrv tests that run a real worker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from socketsrv.worker import Worker
from tests.support.worker import running_worker


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    """One worker on the memory bus with the FAST settings of tests/support/worker.py."""
    async with running_worker() as w:
        yield w
