"""The bench's publishers (bench/targets.py): Herald's sends what the Q&A site's relay sends."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from bench.targets import PUBLISH_ATTEMPTS, HeraldPublisher
from herald_contract.errors import PublishFailed


class FailingFirst:
    """A stand-in for ``publisher.publish.Publisher``: the first *failures* publications fail."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.event_ids: list[str] = []

    async def publish(self, channel: str, data: Any, *, event_id: str = "") -> None:
        self.event_ids.append(event_id)
        if len(self.event_ids) <= self.failures:
            raise PublishFailed(channel, "connection lost")


def test_a_failed_publication_is_sent_again_with_the_same_event_id() -> None:
    publisher = HeraldPublisher("redis://127.0.0.1:1")
    client = FailingFirst(failures=1)
    asyncio.run(publisher._send(cast(Any, client), "question:1", {"v": 1}))
    assert len(client.event_ids) == 2
    assert client.event_ids[0] and client.event_ids[0] == client.event_ids[1]
    assert publisher.retries == 1


def test_a_publication_that_keeps_failing_fails_after_the_last_attempt() -> None:
    publisher = HeraldPublisher("redis://127.0.0.1:1")
    client = FailingFirst(failures=PUBLISH_ATTEMPTS)
    with pytest.raises(PublishFailed):
        asyncio.run(publisher._send(cast(Any, client), "question:1", {"v": 1}))
    assert len(client.event_ids) == PUBLISH_ATTEMPTS
    assert len(set(client.event_ids)) == 1


def test_each_publication_has_its_own_event_id() -> None:
    publisher = HeraldPublisher("redis://127.0.0.1:1")
    client = FailingFirst(failures=0)
    for _ in range(3):
        asyncio.run(publisher._send(cast(Any, client), "question:1", {"v": 1}))
    assert len(set(client.event_ids)) == 3
