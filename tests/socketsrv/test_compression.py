"""permessage-deflate (RFC 7692) is off by default and works when turned on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import connect

from herald_contract.envelope import pack_data
from socketsrv.worker import Worker
from tests.support.worker import running_worker, ws_url


async def subscribe_and_collect(
    worker: Worker, *, offer_deflate: bool
) -> tuple[str | None, list[dict[str, Any]]]:
    """Subscribe to question:1, publish three 500-byte texts, return the extension header and
    the three publication frames."""
    async with connect(
        ws_url(worker), compression="deflate" if offer_deflate else None, open_timeout=5
    ) as ws:
        await ws.send(json.dumps({"op": "connect", "id": 1}))
        await asyncio.wait_for(ws.recv(), 5)
        await ws.send(json.dumps({"op": "subscribe", "id": 2, "channel": "question:1"}))
        await asyncio.wait_for(ws.recv(), 5)
        for i in range(3):
            await worker.bus.publish("question:1", pack_data({"text": "a" * 500, "i": i}))
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 5)) for _ in range(3)]
        return ws.response.headers.get("Sec-WebSocket-Extensions"), frames


async def test_compression_is_not_negotiated_by_default() -> None:
    async with running_worker() as worker:
        extensions, frames = await subscribe_and_collect(worker, offer_deflate=True)
    assert extensions is None
    assert [f["data"]["i"] for f in frames] == [0, 1, 2]


async def test_with_compression_on_a_deflate_client_gets_compressed_publications_in_order() -> None:
    async with running_worker(compression=True) as worker:
        extensions, frames = await subscribe_and_collect(worker, offer_deflate=True)
        written = worker.metrics.registry.get_sample_value("herald_bytes_written_total")
    assert extensions is not None and extensions.startswith("permessage-deflate")
    assert [f["data"]["i"] for f in frames] == [0, 1, 2]
    assert written is not None and written < 3 * 500  # the 500-byte texts were compressed


async def test_with_compression_on_a_client_without_deflate_gets_plain_frames() -> None:
    async with running_worker(compression=True) as worker:
        extensions, frames = await subscribe_and_collect(worker, offer_deflate=False)
    assert extensions is None
    assert [f["data"]["text"] for f in frames] == ["a" * 500] * 3
