"""Adapter for Herald protocol v1 over JSON (docs/protocol.md), for the load generator.

One connection sends ``connect`` (with a token when one of its channels is a ``user:``
channel), then one ``subscribe`` per channel, with ``since`` = its position when it has one
(a reconnect: recovery). It answers ``hb`` with ``pong`` and checks every ``pub`` frame's
offset against its position: ``offset == position + 1`` is in order, below is a duplicate,
above is a gap of ``offset - position - 1`` missed publications.

Parsing is cheap on purpose (the load generator must not be the bottleneck): a ``pub`` frame
on a non-probe connection is never decoded as JSON; its channel and offset are found with
byte searches (the server writes ``{"type":"pub","channel":"...","offset":N,...}`` compactly,
socketsrv/protocol/frames.py). Probe connections decode the frame to read ``data["ts"]``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from bench.loadgen.adapters import OP_TEXT, ClientState, Message, Positions
from socketsrv.protocol.opening import open_token

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SUBPROTOCOL = "herald.v1.json"
_PUB_PREFIX = b'{"type":"pub","channel":"'
_PUB_PREFIX_LEN = len(_PUB_PREFIX)
_OFFSET_KEY = b'","offset":'
_OFFSET_KEY_LEN = len(_OFFSET_KEY)
_HB = b'{"type":"hb"}'
_PONG: list[Message] = [(OP_TEXT, b'{"op":"pong"}')]
_NOTHING: list[Message] = []

TokenFor = Callable[[str], str]
"""Returns a connection token for a user id (a decimal string)."""


class EdDSATokens:
    """Signs connection tokens with an Ed25519 key, the way the Q&A core does (picklable:
    the key travels as PEM to the load processes, which sign their own tokens)."""

    def __init__(self, private_pem: bytes | None = None, *, lifetime_s: float = 4 * 3600.0):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        if private_pem is None:
            private_pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        self.private_pem = private_pem
        self.lifetime_s = lifetime_s
        self._key: Ed25519PrivateKey | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"private_pem": self.private_pem, "lifetime_s": self.lifetime_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.private_pem = state["private_pem"]
        self.lifetime_s = state["lifetime_s"]
        self._key = None

    @property
    def public_pem(self) -> str:
        from cryptography.hazmat.primitives import serialization

        return (
            self._private_key()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def _private_key(self) -> Ed25519PrivateKey:
        if self._key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            key = serialization.load_pem_private_key(self.private_pem, None)
            if not isinstance(key, Ed25519PrivateKey):
                raise TypeError(f"an Ed25519 private key is needed, not {type(key).__name__}")
            self._key = key
        return self._key

    def __call__(self, user_id: str) -> str:
        import base64

        def b64(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        header = b64(b'{"alg":"EdDSA","typ":"JWT"}')
        claims = b64(
            json.dumps({"sub": user_id, "exp": int(time.time() + self.lifetime_s)}).encode()
        )
        signing_input = f"{header}.{claims}"
        signature = self._private_key().sign(signing_input.encode())
        return f"{signing_input}.{b64(signature)}"


class HeraldAdapter:
    """:class:`bench.loadgen.adapters.Adapter` for Herald protocol v1, JSON subprotocol.

    *tokens* signs a token for connections that subscribe to a ``user:<id>`` channel (the
    server allows ``user:`` channels only to that user); the others connect anonymously.
    ``errors`` counts error replies received by this process's connections (a subscribe
    refused with 429/503 leaves the connection short of ready; the engine reports both).
    """

    name = "herald"

    def __init__(
        self, tokens: TokenFor | None = None, *, path: str = "/ws", fast_open: bool | None = None
    ) -> None:
        self.tokens = tokens
        self.path = path
        if fast_open is None:  # HERALD_BENCH_OPEN=classic measures the connect-then-subscribe path
            fast_open = os.environ.get("HERALD_BENCH_OPEN", "fast") != "classic"
        self.fast_open = fast_open
        """Carry the connect and the subscribes in the upgrade request (as client-js does;
        docs/protocol.md#fast-open) rather than sending them after the 101."""
        self.errors = 0
        self.error_codes: dict[str, int] = {}

    def upgrade_request(self, host: str, port: int, offered: str = SUBPROTOCOL) -> bytes:
        # The key only has to be 16 bytes in base64 (RFC 6455 4.1); a fixed one saves the
        # load generator a random draw per connection and the server does the same work.
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {offered}\r\n\r\n"
        ).encode()

    def open_request(
        self, host: str, port: int, channels: Sequence[str], positions: Positions | None
    ) -> bytes:
        token = open_token(self._commands(channels, positions))
        return self.upgrade_request(host, port, f"{SUBPROTOCOL}, {token}")

    def open_messages(self, channels: Sequence[str], positions: Positions | None) -> list[Message]:
        return [(OP_TEXT, _dumps(c)) for c in self._commands(channels, positions)]

    def _commands(
        self, channels: Sequence[str], positions: Positions | None
    ) -> list[dict[str, Any]]:
        connect: dict[str, Any] = {"op": "connect", "id": 1}
        if self.tokens is not None:
            for channel in channels:
                if channel.startswith("user:"):
                    connect["token"] = self.tokens(channel[5:])
                    break
        out: list[dict[str, Any]] = [connect]
        for i, channel in enumerate(channels):
            sub: dict[str, Any] = {"op": "subscribe", "id": 2 + i, "channel": channel}
            if positions and channel in positions:
                epoch, offset = positions[channel]
                sub["since"] = {"epoch": epoch, "offset": offset}
            out.append(sub)
        return out

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        if payload.startswith(_PUB_PREFIX):
            if probe:
                frame = json.loads(payload)
                channel, offset = frame["channel"], frame["offset"]
                data = frame.get("data")
                if isinstance(data, dict):
                    state.record_latency(data.get("ts"))
            else:
                end = payload.find(_OFFSET_KEY, _PUB_PREFIX_LEN)
                if end < 0:
                    return _NOTHING
                channel = payload[_PUB_PREFIX_LEN:end].decode()
                start = end + _OFFSET_KEY_LEN
                stop = payload.find(b",", start)
                offset = int(payload[start:stop])
            _count_publication(state, channel, offset)
            if offset == 1:
                _take_first_epoch(state, channel, payload)
            return _NOTHING
        if payload == _HB:
            return _PONG
        return self._on_other(state, payload)

    def _on_other(self, state: ClientState, payload: bytes) -> list[Message]:
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "reply":
            index = frame.get("id", 0) - 2
            if 0 <= index < len(state.channels):
                result = frame["result"]
                channel = state.channels[index]
                recovery = result.get("recovery")
                state.subscribed += 1
                if recovery == "recovered":
                    state.recovered += 1  # the position stays: the replay follows
                else:
                    if recovery == "failed":
                        state.recovery_failed += 1
                    state.positions[channel] = (result["epoch"], result["offset"])
        elif kind == "error":
            self.errors += 1
            code = str(frame.get("code"))
            self.error_codes[code] = self.error_codes.get(code, 0) + 1
        return _NOTHING


def _count_publication(state: ClientState, channel: str, offset: int) -> None:
    position = state.positions.get(channel)
    state.publications += 1
    if position is None:
        return  # a pub before its subscribe reply: the server never sends one
    last = position[1]
    if offset == last + 1:
        state.positions[channel] = (position[0], offset)
    elif offset <= last:
        state.duplicates += 1
    else:
        state.gaps += offset - last - 1
        state.positions[channel] = (position[0], offset)


def _take_first_epoch(state: ClientState, channel: str, payload: bytes) -> None:
    """A position at "-" (nothing was published) takes the epoch offset 1 names
    (docs/protocol.md#recovery), so that it recovers after a reconnect."""
    position = state.positions.get(channel)
    if position is not None and position[0] == "-":
        epoch = json.loads(payload).get("epoch")
        if isinstance(epoch, str):
            state.positions[channel] = (epoch, position[1])


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()
