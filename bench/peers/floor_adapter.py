"""Adapter for the floor server (bench/peers/floor.py): ``sub <channel>`` / ``ok <channel>``."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence

from bench.loadgen.adapters import OP_TEXT, ClientState, Message

_PUB = b'{"type":"pub"'


class FloorAdapter:
    name = "floor"

    def upgrade_request(self, host: str, port: int) -> bytes:
        key = base64.b64encode(os.urandom(16))
        return (
            b"GET /ws HTTP/1.1\r\nHost: " + f"{host}:{port}".encode()
            + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key
            + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )  # fmt: skip

    def open_messages(
        self, channels: Sequence[str], positions: dict[str, tuple[str, int]] | None
    ) -> list[Message]:
        # The floor has no history: positions are ignored.
        return [(OP_TEXT, b"sub " + channel.encode()) for channel in channels]

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        if opcode != OP_TEXT:
            return []
        if payload.startswith(_PUB):
            state.publications += 1
            if probe:
                state.record_latency(json.loads(payload)["data"].get("ts"))
        elif payload.startswith(b"ok "):
            state.subscribed += 1
        return []
