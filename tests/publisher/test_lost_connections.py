"""What publisher/publish.py does when a connection is lost: a stale pooled connection is
replaced before a publish goes out (herald_contract/redis_pools.py), and a publish whose reply
is lost is retried once only when it has an event id, never otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from herald_contract.envelope import decode_envelope
from herald_contract.errors import PublishFailed
from herald_contract.keys import KeyLayout
from herald_contract.redis_pools import IDLE_CHECK_S
from publisher.publish import Publisher
from tests.support.redis_server import RedisServer

CHANNEL = "question:42"
KEYS = KeyLayout()


class ReplyCutter:
    """A TCP proxy to Redis that, once armed, lets the next EVALSHA through and then closes
    the client's connection instead of passing Redis's reply back: a publication made whose
    acknowledgement never arrives (the server died, or the network did, after running it)."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()
        self.armed = False
        self.replies_cut = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pumps):
            task.cancel()
        for task in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pumps.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        cut = asyncio.Event()
        try:
            await asyncio.gather(
                self._requests(reader, up_writer, cut), self._replies(up_reader, writer, cut)
            )
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for closing in (writer, up_writer):
                closing.close()
            self._pumps.discard(task)

    async def _requests(
        self, reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter, cut: asyncio.Event
    ) -> None:
        while data := await reader.read(65536):
            if self.armed and b"EVALSHA" in data:
                self.armed = False
                cut.set()  # before the request goes on: its reply is the next one back
            up_writer.write(data)
            await up_writer.drain()
        up_writer.close()

    async def _replies(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: asyncio.Event
    ) -> None:
        while data := await up_reader.read(65536):
            if cut.is_set():
                self.replies_cut += 1
                break
            writer.write(data)
            await writer.drain()
        writer.close()


@pytest.fixture
async def cutter(redis_server: RedisServer) -> AsyncIterator[ReplyCutter]:
    proxy = ReplyCutter(redis_server.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def stored_data(server: RedisServer) -> list[Any]:
    """The data of every publication in *CHANNEL*'s history, oldest first."""
    entries: Any = server.client().xrange(KEYS.history(CHANNEL))
    return [decode_envelope(fields[b"p"]).data for _, fields in entries]


async def test_a_publish_with_an_event_id_whose_reply_is_lost_is_retried_once_as_a_duplicate(
    redis_server: RedisServer, cutter: ReplyCutter
) -> None:
    async with Publisher(cutter.url) as publisher:
        first = await publisher.publish(CHANNEL, "first")  # loads the script
        cutter.armed = True

        result = await publisher.publish(CHANNEL, "second", event_id="vote:7")

    assert cutter.replies_cut == 1
    # The first attempt made the publication; the retry found its event id and published
    # nothing more.
    assert result.duplicate
    assert result.position.offset == first.position.offset + 1
    assert stored_data(redis_server) == ["first", "second"]


async def test_a_publish_without_an_event_id_whose_reply_is_lost_fails_and_is_not_repeated(
    redis_server: RedisServer, cutter: ReplyCutter
) -> None:
    async with Publisher(cutter.url) as publisher:
        await publisher.publish(CHANNEL, "first")
        cutter.armed = True

        with pytest.raises(PublishFailed) as caught:
            await publisher.publish(CHANNEL, "second")

        assert cutter.replies_cut == 1
        assert caught.value.channel == CHANNEL
        # The caller was told it may or may not have been made: it was, once.
        assert stored_data(redis_server) == ["first", "second"]
        third = await publisher.publish(CHANNEL, "third")  # the publisher is still usable
    assert third.position.offset == 3


async def test_a_publish_after_redis_restarted_goes_out_on_a_new_connection_at_first_try(
    redis_server: RedisServer,
) -> None:
    async with Publisher(redis_server.url) as publisher:
        await publisher.publish(CHANNEL, "before")
        # Blocking the event loop: the pooled connection's EOF stays unread, as when the
        # loop is busy while Redis dies. The wait makes that connection idle for longer than
        # the pool's check interval, the case every failover is (it lasts seconds).
        redis_server.kill()
        time.sleep(IDLE_CHECK_S * 2)  # noqa: ASYNC251 (blocking the loop is the point)
        redis_server.start()

        # No event id, so no retry: only the pool's PING before lending can save it.
        result = await publisher.publish(CHANNEL, "after")

    assert (result.position.offset, result.duplicate) == (1, False)  # the history was lost
    assert stored_data(redis_server) == ["after"]
