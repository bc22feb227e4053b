"""How one load-generator connection speaks to one kind of server (bench/README.md)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

Message = tuple[int, bytes]
"""(opcode, payload) of one websocket message."""

Positions = dict[str, tuple[str, int]]
"""Per channel, the (epoch, offset) of the last publication received: where to recover from."""


@dataclass(slots=True)
class ClientState:
    """What one connection has seen; the adapter updates it, the engine aggregates it."""

    channels: Sequence[str]
    publications: int = 0
    subscribed: int = 0
    """Subscriptions confirmed by the server."""
    positions: Positions = field(default_factory=dict)
    """Per channel (epoch, offset) for servers that support recovery (Herald)."""
    duplicates: int = 0
    gaps: int = 0
    recovered: int = 0
    recovery_failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    """Publish-to-receive latencies, only on probe connections."""

    @property
    def ready(self) -> bool:
        return self.subscribed >= len(self.channels)

    def count_publication(self, probe: bool, published_ms: Callable[[], object]) -> None:
        """One publication received; on a probe connection, also its latency, from
        *published_ms* (called only then: the other connections never decode a frame)."""
        self.publications += 1
        if probe:
            self.record_latency(published_ms())

    def record_latency(self, published_ms: object) -> None:
        """A probe's publish-to-receive latency from the publication's ``ts`` (ms since the
        epoch, set by the bench publisher); publications without one are not timed."""
        if isinstance(published_ms, int | float):
            self.latencies_ms.append(time.time() * 1000.0 - published_ms)


class Adapter(Protocol):
    name: str

    def upgrade_request(self, host: str, port: int) -> bytes:
        """The HTTP/1.1 websocket upgrade request."""

    def open_messages(self, channels: Sequence[str], positions: Positions | None) -> list[Message]:
        """Messages to send once the 101 response arrived (connect, subscribes)."""

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        """Handle one complete server message; return messages to send back."""


@runtime_checkable
class OpensFast(Protocol):
    """An adapter whose first commands can ride in the upgrade request (Herald's fast open,
    docs/protocol.md#fast-open): then nothing is sent after the 101."""

    fast_open: bool

    def open_request(
        self, host: str, port: int, channels: Sequence[str], positions: Positions | None
    ) -> bytes:
        """The upgrade request carrying the connection's connect and subscribes."""


@runtime_checkable
class CountsErrors(Protocol):
    """An adapter that counts the error replies its connections received (Herald's): the
    load process reports them and zeroes them at each reset."""

    errors: int
    error_codes: dict[str, int]
