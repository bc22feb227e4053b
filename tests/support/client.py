"""A protocol-level test client: a real websocket from the ``websockets`` library.

It speaks Herald's protocol v1 the way a browser client must (docs/protocol.md): connect,
subscribe with recovery, answer heartbeats, keep (epoch, offset) per channel and drop
duplicates. Tests assert on what it recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol


@dataclass
class ChannelLog:
    epoch: str | None = None
    offset: int = 0
    received: list[tuple[str, int, Any]] = field(default_factory=list)
    """(epoch, offset, data) of every publication delivered, duplicates included."""
    recoveries: list[str] = field(default_factory=list)


class ProtocolError(AssertionError):
    pass


class HeraldTestClient:
    """One connection; reconnect with :meth:`reconnect` keeping the channel positions."""

    def __init__(
        self,
        url: str,
        *,
        msgpack_wire: bool = False,
        token: str | None = None,
        local_addr: tuple[str, int] | None = None,
    ) -> None:
        self.url = url
        self.msgpack_wire = msgpack_wire
        self.token = token
        self.local_addr = local_addr
        self.ws: ClientConnection | None = None
        self.channels: dict[str, ChannelLog] = {}
        self.errors: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.delivery: list[str] = []
        """The ``state`` of every delivery frame received (docs/protocol.md#delivery)."""
        self.answer_heartbeats = True
        self._next_id = 0
        self._waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._on_reply: dict[int, Callable[[dict[str, Any]], None]] = {}
        """Applied by the reader when the reply is read, before the frames after it."""
        self.server_subs: dict[str, dict[str, Any]] = {}
        """This connection's server-side subscriptions, from the connect reply's ``subs``
        (docs/protocol.md#server-side-subscriptions): :meth:`subscribe` answers them itself."""
        self._reader: asyncio.Task[None] | None = None
        self.closed: asyncio.Future[tuple[int | None, str | None]] | None = None

    # Connection

    async def open(self, *, send_connect: bool = True) -> dict[str, Any] | None:
        protocols = [Subprotocol("herald.v1.msgpack" if self.msgpack_wire else "herald.v1.json")]
        kwargs: dict[str, Any] = {}
        if self.local_addr is not None:
            kwargs["local_addr"] = self.local_addr
        self.ws = await connect(
            self.url,
            subprotocols=protocols,
            ping_interval=None,
            max_size=None,
            open_timeout=20,
            close_timeout=2,
            compression=None,
            **kwargs,
        )
        self.closed = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read_forever())
        if not send_connect:
            return None
        command: dict[str, Any] = {"op": "connect"}
        self.server_subs = {}
        if self.token is not None:
            command["token"] = self.token
            since = {n: {"epoch": c.epoch, "offset": c.offset} for n, c in self.channels.items()}
            since = {n: p for n, p in since.items() if p["epoch"] is not None}
            if since:
                command["since"] = dict(list(since.items())[:32])
        return await self.request(command, on_reply=self._take_server_subs)

    def _take_server_subs(self, reply: dict[str, Any]) -> None:
        for name, result in reply["result"].get("subs", {}).items():
            if "recovery" not in result:
                continue  # refused: subscribe() sends a command for it
            log = self.channels.setdefault(name, ChannelLog())
            log.recoveries.append(result["recovery"])
            if result["recovery"] != "recovered":
                log.epoch, log.offset = result["epoch"], result["offset"]
            self.server_subs[name] = result

    async def reconnect(self) -> None:
        """Drop this socket, open a new one and resubscribe every channel with recovery."""
        await self.abort()
        await self.open()
        for name in list(self.channels):
            await self.subscribe(name, recover=True)

    async def abort(self) -> None:
        if self.ws is not None and self.ws.transport is not None:
            self.ws.transport.abort()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def wait_closed(self, timeout: float = 10.0) -> tuple[int | None, str | None]:
        assert self.closed is not None
        return await asyncio.wait_for(asyncio.shield(self.closed), timeout)

    # Commands

    async def send_raw(self, message: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(message)

    async def send(self, command: dict[str, Any]) -> None:
        if self.msgpack_wire:
            await self.send_raw(msgpack.packb(command))
        else:
            await self.send_raw(json.dumps(command))

    async def request(
        self,
        command: dict[str, Any],
        timeout: float = 20.0,
        on_reply: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Send a command with a fresh id; return its reply or error frame.

        *on_reply* is called with the reply frame as soon as it is read, in frame order: the
        publications that follow it may be read before this coroutine resumes.
        """
        self._next_id += 1
        command = {**command, "id": self._next_id}
        future = asyncio.get_running_loop().create_future()
        self._waiters[self._next_id] = future
        if on_reply is not None:
            self._on_reply[self._next_id] = on_reply
        await self.send(command)
        return await asyncio.wait_for(future, timeout)

    async def subscribe(self, channel: str, *, recover: bool = False) -> dict[str, Any]:
        """Subscribe; a server-side subscription of this connection is answered here, with
        its result in the connect reply, as a reply frame (no command is sent)."""
        if channel in self.server_subs:
            return {"type": "reply", "id": None, "result": self.server_subs[channel]}
        log = self.channels.setdefault(channel, ChannelLog())
        command: dict[str, Any] = {"op": "subscribe", "channel": channel}
        if recover and log.epoch is not None:
            command["since"] = {"epoch": log.epoch, "offset": log.offset}

        def take_position(reply: dict[str, Any]) -> None:
            result = reply["result"]
            log.recoveries.append(result["recovery"])
            if result["recovery"] != "recovered":
                log.epoch, log.offset = result["epoch"], result["offset"]

        return await self.request(command, on_reply=take_position)

    # Reading

    async def _read_forever(self) -> None:
        assert self.ws is not None and self.closed is not None
        ws, closed = self.ws, self.closed
        try:
            async for raw in ws:
                frame = msgpack.unpackb(raw) if isinstance(raw, bytes) else json.loads(raw)
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            rcvd = ws.protocol.close_rcvd
            if not closed.done():
                closed.set_result((rcvd.code, rcvd.reason) if rcvd else (None, None))
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("connection closed"))
            self._waiters.clear()
            self._on_reply.clear()

    async def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "pub":
            log = self.channels.setdefault(frame["channel"], ChannelLog())
            if log.epoch == "-" and "epoch" in frame:  # the first epoch of a "-" channel
                log.epoch = frame["epoch"]
            log.received.append((log.epoch or "", frame["offset"], frame["data"]))
            if frame["offset"] > log.offset:
                log.offset = frame["offset"]
        elif kind == "hb":
            self.heartbeats += 1
            if self.answer_heartbeats:
                await self.send({"op": "pong"})
        elif kind == "delivery":
            self.delivery.append(frame["state"])
        elif kind in ("reply", "error"):
            if kind == "error":
                self.errors.append(frame)
            on_reply = self._on_reply.pop(frame.get("id") or -1, None)
            if on_reply is not None and kind == "reply":
                on_reply(frame)
            waiter = self._waiters.pop(frame.get("id") or -1, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame)
        else:
            raise ProtocolError(f"unexpected frame {frame!r}")

    # Assertions

    def offsets(self, channel: str) -> list[int]:
        return [offset for _, offset, _ in self.channels[channel].received]

    def data(self, channel: str) -> list[Any]:
        return [data for _, _, data in self.channels[channel].received]


def assert_offsets_exactly(client: HeraldTestClient, channel: str, expected: Sequence[int]) -> None:
    """The client received exactly these offsets on *channel*, in this order, none twice."""
    got = client.offsets(channel)
    assert got == list(expected), f"{channel}: expected {len(expected)} offsets, got {got[:20]}..."


async def assert_closed_with(client: HeraldTestClient, code: int) -> str | None:
    """The client was closed with *code*; the close reason."""
    closed_code, reason = await client.wait_closed()
    assert closed_code == code, f"closed with {closed_code} ({reason!r}), expected {code}"
    return reason


async def assert_still_open(client: HeraldTestClient) -> None:
    """The connection still answers a ping."""
    assert (await client.request({"op": "ping"}))["type"] == "reply"
