"""One websocket connection of the prober, speaking protocol v1 as a browser client must.

It opens the public endpoint with ``herald.v1.json``, sends ``connect``, subscribes to the
probe channel (with ``since`` once it has a position: recovery), answers heartbeats, keeps
its ``(epoch, offset)`` and drops duplicates, exactly as docs/protocol.md#recovery says. It
treats a gap, a subscribe refused, a reply that does not come within ``reply_timeout_s`` and
a socket silent for longer than ``ping_interval_ms + pong_timeout_ms`` (a deaf socket) as a
lost connection; after a loss it backs off with full jitter (plus the ``retry_ms=<n>`` hint
of a close reason, or a 429's ``Retry-After``) and reconnects, unless the close code says
not to (docs/protocol.md#reconnecting), which stops it.

Everything it learns goes to a :class:`ConnectionListener` (the prober): state changes, the
first subscribe, each publication's data.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from herald_contract.backoff import Backoff
from socketsrv.protocol.codes import should_reconnect

logger = logging.getLogger(__name__)

_RETRY_MS = re.compile(r"\bretry_ms=(\d{1,9})\b")
_SUBPROTOCOL = Subprotocol("herald.v1.json")


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    """Opening the socket, waiting for the connect and subscribe replies."""
    LIVE = "live"
    """Subscribed: probes arrive."""
    BACKOFF = "backoff"
    """Lost; waiting before the next attempt."""
    STOPPED = "stopped"
    """Closed with a code that says do not reconnect (4500: anonymous refused?), or stopped."""


class ConnectionListener(Protocol):
    def state_changed(self, index: int, old: ConnectionState, new: ConnectionState) -> None:
        """Connection *index* moved from *old* to *new*."""

    def subscribed(self, index: int) -> None:
        """Connection *index* has a subscribe reply (each time it subscribes)."""

    def published(self, index: int, data: Any) -> None:
        """Connection *index* applied a publication carrying *data* (in order, once each)."""

    def lost(self, index: int, code: int | None) -> None:
        """Connection *index* was lost; *code* is the close code received, None without one."""


class LostConnection(Exception):
    """The session cannot go on (a gap, a refusal, a deaf socket); the message says why."""


@dataclass(slots=True)
class Position:
    epoch: str
    offset: int


class ProbeConnection:
    """Connection *index* of a prober; :meth:`run` until cancelled or stopped by a close code."""

    def __init__(
        self,
        index: int,
        url: str,
        channel: str,
        listener: ConnectionListener,
        *,
        backoff: Backoff,
        reply_timeout_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.index = index
        self.url = url
        self.channel = channel
        self.state = ConnectionState.CONNECTING
        self.position: Position | None = None
        self._listener = listener
        self._backoff = backoff
        self._reply_timeout_s = reply_timeout_s
        self._sleep = sleep
        self._delivered = False

    async def run(self) -> None:
        """Connect, subscribe, receive; reconnect after each loss; return once stopped."""
        attempt = 0
        while True:
            self._move(ConnectionState.CONNECTING)
            self._delivered = False
            code, hint_s = await self._session_until_lost()
            if code is not None and not should_reconnect(code):
                logger.error(
                    "probe connection %d: closed with %d, which says do not reconnect: stopped"
                    " (does the fleet allow anonymous connections?)",
                    self.index,
                    code,
                )
                self._move(ConnectionState.STOPPED)
                return
            if self._delivered:  # the connection worked: the next loss starts from a short wait
                attempt = 0
            self._move(ConnectionState.BACKOFF)
            await self._sleep(hint_s + self._backoff.delay_s(attempt))
            attempt += 1

    async def _session_until_lost(self) -> tuple[int | None, float]:
        """One connection, until it is lost: the close code received (None without one) and
        the wait the server asked for, in seconds."""
        code: int | None = None
        hint_s = 0.0
        try:
            async with connect(
                self.url,
                subprotocols=[_SUBPROTOCOL],
                ping_interval=None,
                open_timeout=self._reply_timeout_s,
                close_timeout=1.0,
                compression=None,
            ) as ws:
                try:
                    await self._session(ws)
                except LostConnection as exc:
                    logger.info("probe connection %d: %s; reconnecting", self.index, exc)
        except ConnectionClosed as exc:
            if exc.rcvd is not None:
                code = exc.rcvd.code
                hint_s = _retry_hint_s(exc.rcvd.reason)
            logger.info("probe connection %d: closed (%s); reconnecting", self.index, exc)
        except InvalidStatus as exc:
            hint_s = _retry_after_s(exc.response.headers.get("Retry-After"))
            logger.info("probe connection %d: handshake refused: %s", self.index, exc)
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            logger.info("probe connection %d: cannot connect: %r", self.index, exc)
        self._listener.lost(self.index, code)
        return code, hint_s

    async def _session(self, ws: ClientConnection) -> None:
        await _send(ws, {"op": "connect", "id": 1})
        result = await self._reply(ws, 1)
        silence_s = (_int(result, "ping_interval_ms") + _int(result, "pong_timeout_ms")) / 1000
        subscribe: dict[str, Any] = {"op": "subscribe", "id": 2, "channel": self.channel}
        if self.position is not None:
            subscribe["since"] = {"epoch": self.position.epoch, "offset": self.position.offset}
        await _send(ws, subscribe)
        result = await self._reply(ws, 2)
        recovery = result.get("recovery")
        if recovery != "recovered" or self.position is None:
            self.position = Position(str(result.get("epoch")), _int(result, "offset"))
        self._listener.subscribed(self.index)
        self._move(ConnectionState.LIVE)
        while True:
            try:
                # asyncio.timeout, not wait_for: wait_for wraps recv() in a task of its own,
                # whose coroutine was once left never awaited when the loop closed under it.
                async with asyncio.timeout(silence_s):
                    raw = await ws.recv()
            except TimeoutError:
                raise LostConnection(f"no frame for {silence_s:g} s (a deaf socket)") from None
            await self._frame(ws, _decode(raw))

    async def _reply(self, ws: ClientConnection, command_id: int) -> dict[str, Any]:
        """The result of command *command_id*; heartbeats on the way are answered."""
        async with asyncio.timeout(self._reply_timeout_s):
            while True:
                frame = _decode(await ws.recv())
                if frame.get("type") == "hb":
                    await _send(ws, {"op": "pong"})
                elif frame.get("id") == command_id and frame.get("type") == "error":
                    raise LostConnection(f"command {command_id} refused: {frame.get('code')}")
                elif frame.get("id") == command_id and frame.get("type") == "reply":
                    result = frame.get("result")
                    return result if isinstance(result, dict) else {}

    async def _frame(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "hb":
            await _send(ws, {"op": "pong"})
        elif kind == "pub" and frame.get("channel") == self.channel:
            self._publication(frame)

    def _publication(self, frame: dict[str, Any]) -> None:
        position = self.position
        assert position is not None  # set by the subscribe reply, which comes first
        offset = frame.get("offset")
        if type(offset) is not int or offset <= position.offset:
            return  # a duplicate (or not a number): harmless
        if offset > position.offset + 1:
            raise LostConnection(f"a gap: offset {offset} after {position.offset}")
        if position.epoch == "-" and isinstance(frame.get("epoch"), str):
            position.epoch = frame["epoch"]
        position.offset = offset
        self._delivered = True
        self._listener.published(self.index, frame.get("data"))

    def _move(self, state: ConnectionState) -> None:
        old, self.state = self.state, state
        if old is not state:
            self._listener.state_changed(self.index, old, state)


async def _send(ws: ClientConnection, command: dict[str, Any]) -> None:
    await ws.send(json.dumps(command, separators=(",", ":")))


def _decode(raw: str | bytes) -> dict[str, Any]:
    try:
        frame = json.loads(raw)
    except ValueError:
        raise LostConnection("a frame that is not JSON") from None
    if not isinstance(frame, dict):
        raise LostConnection("a frame that is not an object")
    return frame


def _int(result: dict[str, Any], name: str) -> int:
    value = result.get(name)
    if type(value) is not int or value < 0:
        raise LostConnection(f"a reply without a valid {name}")
    return value


def _retry_hint_s(reason: str) -> float:
    """The ``retry_ms=<n>`` hint of a close reason (docs/protocol.md#reconnecting), in s."""
    match = _RETRY_MS.search(reason)
    return int(match.group(1)) / 1000 if match else 0.0


def _retry_after_s(value: str | None) -> float:
    """A 429's ``Retry-After`` in seconds (0 when absent or not a number of seconds)."""
    if value is None or not value.isascii() or not value.isdigit():
        return 0.0
    return min(float(value), 300.0)
