"""Adapter for the floor server (bench/peers/floor.py): ``sub <channel>`` / ``ok <channel>``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from bench.loadgen.adapters import OP_TEXT, ClientState, Message, Positions
from tests.support.raw_ws import upgrade_request

_PUB = b'{"type":"pub"'


class FloorAdapter:
    """:class:`bench.loadgen.adapters.Adapter` for the floor server."""

    name = "floor"

    def upgrade_request(self, host: str, port: int) -> bytes:
        return upgrade_request("/ws", subprotocol=None)

    def open_messages(self, channels: Sequence[str], positions: Positions | None) -> list[Message]:
        # The floor has no history: positions are ignored.
        return [(OP_TEXT, b"sub " + channel.encode()) for channel in channels]

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        if opcode != OP_TEXT:
            return []
        if payload.startswith(_PUB):
            state.count_publication(probe, lambda: json.loads(payload)["data"].get("ts"))
        elif payload.startswith(b"ok "):
            state.subscribed += 1
        return []
