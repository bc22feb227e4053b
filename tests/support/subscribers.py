"""A subscriber as the hub sees one (push and close_with), recording what it is handed."""

from __future__ import annotations

import json

import msgpack

from herald_contract.envelope import StreamPosition
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import Recovery
from tests.support.raw_ws import parse_server_frame


class RecordingSubscriber:
    def __init__(self, wire: WireFormat = WireFormat.JSON) -> None:
        self.wire = wire
        self.frames: list[bytes] = []
        self.closed_with: CloseCode | None = None
        self.replies: list[tuple[StreamPosition, Recovery]] = []

    def push(self, frame: bytes) -> None:
        self.frames.append(frame)

    def close_with(self, code: CloseCode) -> None:
        self.closed_with = code

    def on_subscribed(self, position: StreamPosition, recovery: Recovery) -> None:
        self.replies.append((position, recovery))

    @property
    def offsets(self) -> list[int]:
        decode = json.loads if self.wire is WireFormat.JSON else msgpack.unpackb
        return [decode(parse_server_frame(frame)[1])["offset"] for frame in self.frames]
