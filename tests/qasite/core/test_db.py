"""The engine's pool (qasite/core/db.py), on both databases: the connections a worker needs at
once are kept, not opened and closed around every request."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text

from qasite.core.db import POOL_SIZE, build_engine
from qasite.core.settings import Settings


async def test_a_second_burst_of_reads_reuses_the_connections_of_the_first(
    settings: Settings,
) -> None:
    engine = build_engine(settings)
    opened = 0

    def on_connect(*_: Any) -> None:
        nonlocal opened
        opened += 1

    event.listen(engine.sync_engine, "connect", on_connect)
    release = asyncio.Event()

    async def read() -> None:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await release.wait()

    try:
        for _ in range(2):
            release.clear()
            readers = [asyncio.ensure_future(read()) for _ in range(POOL_SIZE)]
            async with asyncio.timeout(30):  # all of them held at once
                while engine.pool.checkedout() < POOL_SIZE:  # type: ignore[attr-defined]
                    await asyncio.sleep(0.01)
            release.set()
            await asyncio.gather(*readers)
        assert opened == POOL_SIZE
    finally:
        await engine.dispose()
