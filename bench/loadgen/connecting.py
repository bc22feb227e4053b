"""A bounded round of connects: many slots, at most N handshakes in flight, one deadline.

Used by the ``open`` command (each slot tries once) and by ``reconnect_all`` (the reconnect
storm: a connection that fails before it is ready tries again after a jittered backoff, as
a real client does, until the deadline). In the storm an attempt that is not ready
``ready_timeout_s`` after it began (a subscribe refused, a handshake that stalls, or a TCP
connect still waiting) is aborted and tries again, as client-js does after its
``connectTimeoutMs`` (10 s; None: never, for a caller that mends such connections itself).

client-js starts that timer when it creates the socket, so it covers the TCP connect. Until
2026-12-06 this timer started after the TCP connect: a SYN dropped by a worker's full listen
queue waits for the kernel's retransmissions (1, 3, 7, 15, 31, 63 s after the first), and
such attempts held their handshake slot for a minute or two instead of 10 s. In the storm
of 100,000 that starved the last fifth of the clients (bench/results/REPORT.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING

from bench.loadgen.client import Client, Slot, connect

if TYPE_CHECKING:
    from bench.loadgen.process import LoadProcess

_BACKOFF_MIN_S = 0.25
_BACKOFF_CAP_S = 5.0
READY_TIMEOUT_S = 10.0
"""client-js's default ``connectTimeoutMs``."""


class ConnectRound:
    """Connect *slots* of *proc* to host:port; :meth:`run` once."""

    def __init__(
        self,
        proc: LoadProcess,
        host: str,
        port: int,
        slots: Sequence[Slot],
        *,
        concurrency: int,
        deadline: float,
        retry: bool,
        ready_timeout_s: float | None = READY_TIMEOUT_S,
    ) -> None:
        self.proc = proc
        self.host = host
        self.port = port
        self.slots = slots
        self.deadline = deadline
        self.retry = retry
        self.ready_timeout_s = ready_timeout_s
        self._gate = asyncio.Semaphore(concurrency)
        self._sources = itertools.cycle(proc.sources)
        self._tasks: set[asyncio.Task[None]] = set()
        self._attempts: dict[int, int] = {}
        self._ok = 0
        self._settled = 0
        self._all_settled: asyncio.Future[None] | None = None

    async def run(self) -> int:
        """How many slots became ready before the deadline; ``proc.retries`` counts the
        attempts made after a failed one."""
        self._all_settled = asyncio.get_running_loop().create_future()
        for slot in self.slots:
            if self._remaining() <= 0 or not await self._acquire():
                break
            self._spawn(slot)
        if not self.slots:
            return 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._remaining()):
                await self._all_settled
        for task in list(self._tasks):
            task.cancel()
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.on_done = None  # late outcomes no longer matter to this command
        return self._ok

    def _remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def _acquire(self) -> bool:
        """A handshake slot, unless the deadline passes first."""
        try:
            async with asyncio.timeout(self._remaining()):
                await self._gate.acquire()
        except TimeoutError:
            return False
        return True

    def _spawn(self, slot: Slot) -> None:
        self._track(self._one(slot, next(self._sources)))

    def _track(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _client(self, slot: Slot) -> Client:
        """A new connection of *slot* (a subclass makes its own kind)."""
        return Client(self.proc, slot)

    def _connect_failed(self, slot: Slot, reason: str) -> None:
        """An attempt of *slot* ended before it was ready (*reason*: the exception's name,
        ``cancelled`` or ``not_ready_in_time``)."""
        self.proc.connect_failures[reason] += 1

    async def _one(self, slot: Slot, source: str) -> None:
        client = self._client(slot)
        client.on_done = lambda ok: self._done(slot, ok)
        slot.conn = client
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        ready_by = None  # when client-js would give up on this attempt
        if self.retry and self.ready_timeout_s is not None:
            ready_by = started + self.ready_timeout_s
        give_up = self.deadline if ready_by is None else min(self.deadline, ready_by)
        try:
            await connect(loop, client, self.host, self.port, source, max(0.01, give_up - started))
        except (OSError, TimeoutError) as exc:
            late = isinstance(exc, TimeoutError) and give_up == ready_by
            self._connect_failed(slot, "not_ready_in_time" if late else type(exc).__name__)
            client.settle(False)
            return
        except asyncio.CancelledError:
            # The deadline cancels the connects still in flight. A client cancelled before it
            # had a transport never gets connection_lost: marked lost here, so whoever comes
            # back to the slot (the soak's mend) reconnects it instead of waiting on it.
            if client.transport is None:
                client.lost = True
                self._connect_failed(slot, "cancelled")
            raise
        if ready_by is not None:
            loop.call_later(max(0.0, ready_by - time.monotonic()), self._expire, client)

    def _expire(self, client: Client) -> None:
        """Abort *client* if it is still not ready: its failure retries the slot."""
        if client.on_done is None or client.lost or client.transport is None:
            return  # settled already
        self._connect_failed(client.slot, "not_ready_in_time")
        client.closing = True  # the client's own decision, not a loss
        client.abort()

    def _done(self, slot: Slot, ok: bool) -> None:
        self._gate.release()
        n = self._attempts.get(id(slot), 0)
        delay = random.uniform(_BACKOFF_MIN_S, min(_BACKOFF_CAP_S, 0.5 * 2**n))
        if ok or not self.retry or time.monotonic() + delay >= self.deadline:
            self._settle(ok)
            return
        self._attempts[id(slot)] = n + 1
        self.proc.retries += 1
        slot.state.subscribed = 0
        self._track(self._again(slot, delay))

    async def _again(self, slot: Slot, delay: float) -> None:
        await asyncio.sleep(delay)
        if await self._acquire():
            self._spawn(slot)
        else:
            self._settle(False)

    def _settle(self, ok: bool) -> None:
        self._settled += 1
        if ok:
            self._ok += 1
        done = self._all_settled
        if self._settled >= len(self.slots) and done is not None and not done.done():
            done.set_result(None)
