"""A worker on Sentinel-managed Redis across a failover (docs/protocol.md, "After a Redis
failover"): the new primary starts a new epoch for the channel, the worker closes the
channel's subscribers with 4003, and a client that reconnects from its position is told its
recovery failed, then gets every publication after the reply's position."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from publisher.publish import Publisher
from socketsrv.protocol.codes import CloseCode
from tests.support.client import HeraldTestClient
from tests.support.redis_sentinel import SentinelGroup
from tests.support.waiting import eventually
from tests.support.worker import running_worker, ws_url

pytestmark = pytest.mark.redis

CHANNEL = "question:7"


@pytest.fixture
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    with SentinelGroup.launch(tmp_path_factory.mktemp("sentinel")) as group:
        yield group


async def test_after_a_failover_a_subscriber_is_told_recovery_failed_and_goes_on_in_the_new_epoch(
    sentinel_group: SentinelGroup,
) -> None:
    async with (
        running_worker(redis_url=sentinel_group.url) as worker,
        Publisher(sentinel_group.url) as publisher,
    ):
        client = HeraldTestClient(ws_url(worker))
        await client.open()
        await client.subscribe(CHANNEL)
        for n in range(3):
            await publisher.publish(CHANNEL, {"n": n}, event_id=f"before-{n}")
        await eventually(lambda: client.offsets(CHANNEL) == [1, 2, 3])
        old_epoch = client.channels[CHANNEL].epoch

        sentinel_group.failover()
        code, _ = await client.wait_closed(timeout=30.0)
        assert code == CloseCode.STATE_LOST

        await client.open()
        reply = await client.subscribe(CHANNEL, recover=True)
        assert reply["result"]["recovery"] == "failed"
        assert reply["result"]["epoch"] != old_epoch
        top = reply["result"]["offset"]
        assert top == 3  # the new epoch goes on from the offsets the new primary holds
        # The first publish may meet the demoted primary's closed connection: retry it.
        for _ in range(20):
            try:
                await publisher.publish(CHANNEL, {"n": 3}, event_id="after-0")
                break
            except Exception:  # noqa: BLE001 - PublishFailed or a connection error
                await asyncio.sleep(0.25)
        await eventually(lambda: client.offsets(CHANNEL) == [1, 2, 3, 4])
        assert client.data(CHANNEL) == [{"n": n} for n in range(4)]
        assert client.channels[CHANNEL].epoch == reply["result"]["epoch"]
        await client.close()
