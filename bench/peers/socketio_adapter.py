"""Adapter for Socket.IO servers: Engine.IO v4 + Socket.IO v5, as python-socketio
(bench/peers/socketio_server.py) and Socket.IO 4 on Node.js (bench/peers/socketio_node/)
speak it.

Over the websocket transport every Engine.IO packet is one text message: ``0{...}`` open,
``2`` ping (answered ``3`` pong, or the server drops the connection after its ping timeout),
``4...`` message, whose Socket.IO packet follows: ``40`` connect, ``42`` event, ``43`` ack.

The client's connect and subscribe events go out right after the 101, without waiting for
the server's open packet: python-engineio reads the websocket only once the socket is set
up (it queues ``0{...}`` first), and python-socketio handles one connection's packets in
order (``40`` before ``42``), so nothing sent early is lost or refused.

Socket.IO on Node.js refuses that: its namespace admits the socket asynchronously (after the
middlewares, on a later tick), and an event for a namespace the connection has not joined
yet closes the connection ("invalid state"). ``SocketIOAdapter(wait_for_connect=True)``
does what the socket.io client library does: it sends ``40`` alone and the subscribe events
once the server's ``40{...}`` (connected) arrived.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from bench.loadgen.adapters import OP_TEXT, ClientState, Message, Positions
from tests.support.raw_ws import upgrade_request

_PUB = b'42["pub",'
_PUB_DATA = len(_PUB)
_PONG: Message = (OP_TEXT, b"3")
_CONNECT: Message = (OP_TEXT, b"40")


def _subscribes(channels: Sequence[str]) -> list[Message]:
    # Ack id = index of the channel.
    messages: list[Message] = []
    for ack_id, channel in enumerate(channels):
        event = json.dumps(["subscribe", channel], separators=(",", ":"))
        messages.append((OP_TEXT, f"42{ack_id}{event}".encode()))
    return messages


class SocketIOAdapter:
    """:class:`bench.loadgen.adapters.Adapter` for Socket.IO over the websocket transport;
    *wait_for_connect*: subscribe only once connected (Node.js; see the module docstring)."""

    def __init__(self, wait_for_connect: bool = False) -> None:
        self.wait_for_connect = wait_for_connect
        self.name = "socketio-node" if wait_for_connect else "socketio"

    def upgrade_request(self, host: str, port: int) -> bytes:
        return upgrade_request("/socket.io/?EIO=4&transport=websocket", subprotocol=None)

    def open_messages(self, channels: Sequence[str], positions: Positions | None) -> list[Message]:
        # Socket.IO has no recovery positions here: ignored.
        if self.wait_for_connect:
            return [_CONNECT]
        return [_CONNECT, *_subscribes(channels)]

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        if opcode != OP_TEXT:
            return []
        if payload.startswith(_PUB):
            # 42["pub",{...}] : the data is the event's only argument.
            state.count_publication(probe, lambda: json.loads(payload[_PUB_DATA:-1]).get("ts"))
            return []
        if payload == b"2":
            return [_PONG]
        if payload.startswith(b"43"):
            state.subscribed += 1
        elif self.wait_for_connect and payload.startswith(b"40"):
            return _subscribes(state.channels)
        # 0{...} (open), 40{...} (connected), 41 / 44 (refused, disconnected): nothing to send.
        return []
