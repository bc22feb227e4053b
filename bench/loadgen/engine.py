"""Load processes: many raw websocket clients per process, driven over a pipe.

    gen = LoadGenerator(processes=6)          # spawns 6 processes (multiprocessing "spawn")
    await gen.start()
    await gen.set_adapter(HeraldAdapter())
    await gen.open("127.0.0.1", port, assignments, probe_every=20, timeout_s=120)
    stats = await gen.stats()                 # summed over the processes
    await gen.close_all()
    await gen.stop()

Each process runs uvloop and holds up to :data:`MAX_PER_PROCESS` connections, bound to its
own loopback source address (127.0.0.2, 127.0.0.3, ...: the ephemeral port range is per
source/destination pair, FACTS.md). A connection is a plain :class:`asyncio.Protocol`: it
writes the adapter's upgrade request, parses the 101 response, then parses server frames
(unmasked; a read may hold a partial frame or several frames), masks its own frames (RFC 6455
5.3) and hands each complete message to the adapter (bench/loadgen/adapters.py). No
websockets library on this side: the load generator must stay cheaper than the servers it
measures, and it reports its own CPU time so that the report can show it.

Every command is bounded in count (the caller passes the connections) and in time (each
takes a timeout and answers when it passes, with what was reached). Commands: ``adapter``,
``open``, ``stats``, ``latencies`` (drain), ``reset``, ``verify``, ``close_all``,
``reconnect_all`` (abort every connection and reconnect with the recovery positions: the
reconnect storm), ``churn`` (connect, subscribe, close at a rate for a while), ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import multiprocessing
import os
import random
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from bench.loadgen.adapters import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Adapter,
    ClientState,
    Message,
)

MAX_PER_PROCESS = 19_000
"""Sockets per load process: the open-file limit is 20,000 (FACTS.md), with room for pipes."""

_OP_CONT = 0x0
_CRLF2 = b"\r\n\r\n"
_rand32 = random.Random(os.getpid()).getrandbits


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, unfragmented client frame (RFC 6455 5.2, 5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    key = _rand32(32).to_bytes(4, "big")
    if not n:
        return head + key
    mask = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + body


IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


async def connect(
    loop: asyncio.AbstractEventLoop, protocol: asyncio.Protocol, host: str, port: int, source: str
) -> None:
    """Connect *protocol* from loopback address *source* to host:port.

    The socket is bound to *source* with ``IP_BIND_ADDRESS_NO_PORT`` (Linux 4.2+), so the
    kernel picks the port at connect time for the 4-tuple. A plain bind to port 0 searches
    the whole port range for a port no socket on *source* uses: measured here, 6 us per bind
    up to 12,000 sockets on one address, then 0.8 ms, then 2.7 ms past 15,000: the load
    generator itself would slow every open and every reconnect storm."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        await loop.sock_connect(sock, (host, port))
        await loop.create_connection(lambda: protocol, sock=sock)
    except BaseException:
        sock.close()
        raise


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- one process ----------------------------------------------------------------------------


class Slot:
    """One logical client: its channels and state survive reconnects (new sockets)."""

    __slots__ = ("conn", "ever_ready", "probe", "ready", "state")

    def __init__(self, channels: Sequence[str], probe: bool) -> None:
        self.state = ClientState(channels=channels)
        self.probe = probe
        self.conn: Client | None = None
        self.ready = False
        self.ever_ready = False
        """Ready at some point since the last reset (a client that never was cannot have
        been sent anything: verify counts what it missed apart)."""


class Client(asyncio.Protocol):
    """One websocket connection of a :class:`Slot` (see the module docstring)."""

    __slots__ = (
        "buf",
        "closing",
        "frags",
        "lost",
        "on_done",
        "opened",
        "proc",
        "slot",
        "transport",
        "upgraded",
    )

    def __init__(self, proc: LoadProcess, slot: Slot) -> None:
        self.proc = proc
        self.slot = slot
        self.transport: Any = None
        self.buf = b""
        self.upgraded = False
        self.opened = False
        self.closing = False
        self.lost = False
        self.frags: list[bytes] | None = None
        self.on_done: Any = None
        """Called once with True (ready) or False (failed); releases the caller's slot."""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.proc.upgrade)

    def settle(self, ok: bool) -> None:
        done, self.on_done = self.on_done, None
        if done is not None:
            done(ok)

    def data_received(self, data: bytes) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(_CRLF2)
            if end < 0:
                if len(data) > 65536:
                    self.fail_handshake(b"oversized")
                    return
                self.buf = data
                return
            status = data[9:12]
            if not data.startswith(b"HTTP/1.1 101"):
                self.fail_handshake(status)
                return
            self.upgraded = True
            self.opened = True
            self.proc.open_count += 1
            slot = self.slot
            positions = slot.state.positions or None
            messages = self.proc.adapter.open_messages(slot.state.channels, positions)
            self.send_all(messages)
            data = data[end + 4 :]
            if not slot.state.channels:
                self.proc.mark_ready(self)
        n = len(data)
        i = 0
        slot = self.slot
        state = slot.state
        on_message = self.proc.adapter.on_message
        probe = slot.probe
        count = 0
        while i + 2 <= n:
            b0 = data[i]
            length = data[i + 1] & 0x7F
            start = i + 2
            if length == 126:
                if i + 4 > n:
                    break
                length = (data[i + 2] << 8) | data[i + 3]
                start = i + 4
            elif length == 127:
                if i + 10 > n:
                    break
                length = int.from_bytes(data[i + 2 : i + 10], "big")
                start = i + 10
            stop = start + length
            if stop > n:
                break
            i = stop
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode in (OP_TEXT, OP_BINARY):
                count += 1
                replies = on_message(state, opcode, data[start:stop], probe)
                if replies:
                    self.send_all(replies)
                if not slot.ready and state.subscribed >= len(state.channels):
                    self.proc.mark_ready(self)
            else:
                self.on_other_frame(b0, opcode, data[start:stop])
                if self.transport is None:
                    break
        self.proc.messages += count
        if i < n and self.transport is not None:
            self.buf = data[i:]

    def on_other_frame(self, b0: int, opcode: int, payload: bytes) -> None:
        if opcode in (OP_TEXT, OP_BINARY):  # first fragment
            self.frags = [bytes((opcode,)), payload]
        elif opcode == _OP_CONT and self.frags is not None:
            self.frags.append(payload)
            if b0 & 0x80:
                frags, self.frags = self.frags, None
                slot = self.slot
                replies = self.proc.adapter.on_message(
                    slot.state, frags[0][0], b"".join(frags[1:]), slot.probe
                )
                if replies:
                    self.send_all(replies)
                if not slot.ready and slot.state.subscribed >= len(slot.state.channels):
                    self.proc.mark_ready(self)
        elif opcode == OP_PING:
            self.send_all([(OP_PONG, payload)])
        elif opcode == OP_CLOSE:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.proc.closes[code] += 1
            if not self.closing:
                self.closing = True
                self.send_all([(OP_CLOSE, payload[:2])])
            # The server closes TCP after the closing handshake (RFC 6455 7.1.1), so its side
            # keeps the TIME_WAIT and the client ports are free again at once.

    def send_all(self, messages: list[Message]) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if len(messages) == 1:
            transport.write(mask_frame(*messages[0]))
        else:
            transport.write(b"".join(mask_frame(op, payload) for op, payload in messages))

    def fail_handshake(self, status: bytes) -> None:
        self.proc.handshake_failures[status.decode("ascii", "replace")] += 1
        self.settle(False)
        self.transport.abort()

    def close(self) -> None:
        """Start the closing handshake (1000); abort if the socket never opened."""
        transport = self.transport
        if transport is None or self.lost:
            return
        if self.upgraded and not self.closing:
            self.closing = True
            self.send_all([(OP_CLOSE, (1000).to_bytes(2, "big"))])
        elif not self.upgraded:
            transport.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        proc = self.proc
        if self.opened:
            proc.open_count -= 1
        slot = self.slot
        if slot.conn is self:
            if slot.ready:
                slot.ready = False
                proc.ready_count -= 1
            if not self.closing:
                proc.lost_unexpectedly += 1
        self.settle(False)
        self.transport = None
        proc.on_lost(self)


class LoadProcess:
    """The connections of one load process and the commands that drive them."""

    def __init__(self, index: int, sources: Sequence[str], churn_sources: Sequence[str]) -> None:
        self.index = index
        self.sources = list(sources)
        self.churn_sources = list(churn_sources)
        self.adapter: Adapter = _NoAdapter()
        self.upgrade = b""
        self.slots: list[Slot] = []
        self.open_count = 0
        self.ready_count = 0
        self.lost_unexpectedly = 0
        self.connect_failures: Counter[str] = Counter()
        self.handshake_failures: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.messages = 0
        """Data messages handed to the adapter (cheap progress for flow control)."""
        self.retries = 0
        """Reconnect attempts after a failed one (reconnect_all only)."""
        self._all_lost: asyncio.Event | None = None
        self._churn_lost: dict[Client, asyncio.Future[None]] = {}

    # counters kept by the clients

    def mark_ready(self, client: Client) -> None:
        slot = client.slot
        if slot.conn is client and not slot.ready:
            slot.ready = True
            slot.ever_ready = True
            self.ready_count += 1
        client.settle(True)

    def on_lost(self, client: Client) -> None:
        waiter = self._churn_lost.pop(client, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._all_lost is not None and self.open_count <= 0:
            self._all_lost.set()

    # commands

    def cmd_adapter(self, adapter: Adapter, host: str, port: int) -> dict[str, Any]:
        self.adapter = adapter
        self.upgrade = adapter.upgrade_request(host, port)
        return {}

    async def cmd_open(
        self,
        host: str,
        port: int,
        assignments: Sequence[Sequence[str]],
        probe_every: int,
        concurrency: int,
        timeout_s: float,
    ) -> dict[str, Any]:
        if len(self.slots) + len(assignments) > MAX_PER_PROCESS:
            raise ValueError(f"at most {MAX_PER_PROCESS} connections per load process")
        start_index = len(self.slots)
        new = [
            Slot(channels, probe_every > 0 and (start_index + i) % probe_every == 0)
            for i, channels in enumerate(assignments)
        ]
        self.slots.extend(new)
        started = time.monotonic()
        ok = await self._connect_many(host, port, new, concurrency, started + timeout_s)
        gc.freeze()  # the clients live long: keep them out of every later collection
        return {"opened": ok, "seconds": time.monotonic() - started}

    async def _connect_many(
        self,
        host: str,
        port: int,
        slots: Sequence[Slot],
        concurrency: int,
        deadline: float,
        retry: bool = False,
    ) -> int:
        """Connect *slots* with at most *concurrency* handshakes in flight; return how many
        became ready before *deadline*.

        With *retry* (a reconnect storm), a connection that fails before it is ready (refused,
        timed out, closed by the server) tries again after a jittered backoff, as a real client
        does, until *deadline*; ``self.retries`` counts the attempts."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        outcome = {"ok": 0, "settled": 0}
        all_settled = loop.create_future()
        total = len(slots)
        sources = itertools.cycle(self.sources)
        tasks: set[asyncio.Task[None]] = set()
        attempts: dict[int, int] = {}

        def spawn(slot: Slot) -> None:
            task = loop.create_task(one(slot, next(sources)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def again(slot: Slot) -> None:
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await gate.acquire()
            except TimeoutError:
                settle(False)
                return
            spawn(slot)

        def settle(ok: bool) -> None:
            outcome["settled"] += 1
            if ok:
                outcome["ok"] += 1
            if outcome["settled"] >= total and not all_settled.done():
                all_settled.set_result(None)

        def done_for(slot: Slot) -> Any:
            def done(ok: bool) -> None:
                gate.release()
                n = attempts.get(id(slot), 0)
                delay = random.uniform(0.25, min(5.0, 0.5 * 2**n))
                if ok or not retry or time.monotonic() + delay >= deadline:
                    settle(ok)
                    return
                attempts[id(slot)] = n + 1
                self.retries += 1
                slot.state.subscribed = 0
                task = loop.create_task(asyncio.sleep(delay))
                task.add_done_callback(lambda _: _spawn_again(slot))

            return done

        def _spawn_again(slot: Slot) -> None:
            task = loop.create_task(again(slot))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        async def one(slot: Slot, source: str) -> None:
            client = Client(self, slot)
            client.on_done = done_for(slot)
            slot.conn = client
            try:
                async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                    await connect(loop, client, host, port, source)
            except (OSError, TimeoutError) as exc:
                self.connect_failures[type(exc).__name__] += 1
                client.settle(False)

        for slot in slots:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await gate.acquire()
            except TimeoutError:
                break
            spawn(slot)
        if total == 0:
            return 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await all_settled
        for task in list(tasks):
            task.cancel()
        for slot in slots:
            if slot.conn is not None:
                slot.conn.on_done = None  # late outcomes no longer matter to this command
        return outcome["ok"]

    def cmd_progress(self) -> dict[str, Any]:
        return {"messages": self.messages, "open": self.open_count, "ready": self.ready_count}

    def cmd_stats(self) -> dict[str, Any]:
        totals = Counter[str]()
        for slot in self.slots:
            s = slot.state
            totals["publications"] += s.publications
            totals["duplicates"] += s.duplicates
            totals["gaps"] += s.gaps
            totals["subscribed"] += s.subscribed
            totals["recovered"] += s.recovered
            totals["recovery_failed"] += s.recovery_failed
            totals["latency_pending"] += len(s.latencies_ms)
        return {
            "clients": len(self.slots),
            "open": self.open_count,
            "ready": self.ready_count,
            "lost_unexpectedly": self.lost_unexpectedly,
            "adapter_errors": getattr(self.adapter, "errors", 0),
            "adapter_error_codes": dict(getattr(self.adapter, "error_codes", {})),
            "connect_failures": dict(self.connect_failures),
            "handshake_failures": dict(self.handshake_failures),
            "closes": {str(k): v for k, v in self.closes.items()},
            "cpu_s": cpu_seconds(),
            **totals,
        }

    def cmd_latencies(self) -> list[float]:
        out: list[float] = []
        for slot in self.slots:
            lat = slot.state.latencies_ms
            if lat:
                out.extend(lat)
                lat.clear()
        return out

    def cmd_reset(self) -> dict[str, Any]:
        """Zero the per-client counters (positions are kept: they are the recovery state)."""
        for slot in self.slots:
            s = slot.state
            s.publications = s.duplicates = s.gaps = 0
            s.recovered = s.recovery_failed = 0
            s.latencies_ms.clear()
            slot.ever_ready = slot.ready
        self.lost_unexpectedly = 0
        self.connect_failures.clear()
        self.handshake_failures.clear()
        self.closes.clear()
        if hasattr(self.adapter, "errors"):
            self.adapter.errors = 0
        if hasattr(self.adapter, "error_codes"):
            self.adapter.error_codes.clear()
        return {}

    def cmd_verify(self, expected: dict[str, int]) -> dict[str, Any]:
        """Compare what each client got (duplicates aside) with what was published on its
        channels since the last reset."""
        missing = extra = short = exact = never_ready = missing_never_ready = 0
        for slot in self.slots:
            s = slot.state
            want = sum(expected.get(ch, 0) for ch in s.channels)
            got = s.publications - s.duplicates
            if not slot.ever_ready:
                never_ready += 1
                missing_never_ready += max(0, want - got)
            elif got < want:
                missing += want - got
                short += 1
            elif got > want:
                extra += got - want
            else:
                exact += 1
        return {
            "clients_exact": exact,
            "clients_short": short,
            "missing": missing,
            "extra": extra,
            "clients_never_ready": never_ready,
            "missing_never_ready": missing_never_ready,
        }

    async def cmd_close_all(self, timeout_s: float) -> dict[str, Any]:
        """Close every connection (closing handshake), abort what is left at the timeout."""
        self._all_lost = asyncio.Event()
        for slot in self.slots:
            if slot.conn is not None:
                slot.conn.close()
        if self.open_count > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._all_lost.wait()
        aborted = 0
        for slot in self.slots:
            if slot.conn is not None and not slot.conn.lost:
                slot.conn.abort()
                aborted += 1
        self._all_lost = None
        await asyncio.sleep(0)
        self.slots.clear()
        self.ready_count = 0
        self.cmd_reset()  # the next measurement starts from zero (closes included)
        return {"aborted": aborted}

    async def cmd_reconnect_all(
        self, host: str, port: int, concurrency: int, timeout_s: float
    ) -> dict[str, Any]:
        """Abort every connection still open, then reconnect all with recovery positions."""
        started = time.monotonic()
        for slot in self.slots:
            conn = slot.conn
            if conn is not None and not conn.lost:
                conn.closing = True  # a deliberate drop, not an unexpected loss
                conn.abort()
            if slot.ready:
                slot.ready = False
                self.ready_count -= 1
            slot.state.subscribed = 0
        await asyncio.sleep(0)
        self.upgrade = self.adapter.upgrade_request(host, port)
        retries0 = self.retries
        ok = await self._connect_many(
            host, port, self.slots, concurrency, started + timeout_s, retry=True
        )
        gc.freeze()
        return {
            "reconnected": ok,
            "seconds": time.monotonic() - started,
            "retries": self.retries - retries0,
        }

    async def cmd_churn(
        self,
        host: str,
        port: int,
        channels: Sequence[str],
        rate_per_s: float,
        duration_s: float,
        max_count: int,
        concurrency: int,
        cycle_timeout_s: float,
    ) -> dict[str, Any]:
        """Open, subscribe and close connections at *rate_per_s* for *duration_s* (at most
        *max_count*, at most *concurrency* at once); each cycle ends with the server's
        close of the TCP connection. Returns counts and cycle times."""
        loop = asyncio.get_running_loop()
        sources = itertools.cycle(self.churn_sources)
        gate = asyncio.Semaphore(concurrency)
        counts = Counter[str]()
        cycle_ms: list[float] = []
        tasks: set[asyncio.Task[None]] = set()

        async def cycle(source: str) -> None:
            t0 = time.monotonic()
            slot = Slot(channels, False)
            client = Client(self, slot)
            slot.conn = client
            ready: asyncio.Future[bool] = loop.create_future()
            lost: asyncio.Future[None] = loop.create_future()
            client.on_done = lambda ok: ready.done() or ready.set_result(ok)
            self._churn_lost[client] = lost
            try:
                async with asyncio.timeout(cycle_timeout_s):
                    await connect(loop, client, host, port, source)
                    if not await ready:
                        counts["failed"] += 1
                        return
                    client.close()
                    await lost
                counts["completed"] += 1
                cycle_ms.append((time.monotonic() - t0) * 1000.0)
            except (OSError, TimeoutError) as exc:
                counts["failed"] += 1
                counts["error:" + type(exc).__name__] += 1
                client.abort()
            finally:
                self._churn_lost.pop(client, None)
                if slot.ready:
                    slot.ready = False
                    self.ready_count -= 1
                gate.release()

        started = time.monotonic()
        # The count is the goal and the time the bound: a loaded machine may take a little
        # longer than duration_s to launch max_count cycles, never more than half as long.
        end = started + duration_s * 1.5 + 1.0
        launched = 0
        while launched < max_count:
            now = time.monotonic()
            if now >= end:
                break
            due = min(max_count, int((now - started) * rate_per_s) + 1)
            while launched < due and not gate.locked():
                await gate.acquire()
                task = loop.create_task(cycle(next(sources)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                launched += 1
            if gate.locked():
                counts["throttled_ticks"] += 1
            await asyncio.sleep(0.005)
        if tasks:
            await asyncio.wait(tasks, timeout=cycle_timeout_s + 1.0)
        for task in list(tasks):
            task.cancel()
        elapsed = time.monotonic() - started
        return {
            "launched": launched,
            "completed": counts["completed"],
            "failed": counts["failed"],
            "errors": {k: v for k, v in counts.items() if k.startswith("error:")},
            "throttled_ticks": counts["throttled_ticks"],
            "seconds": elapsed,
            "cycle_ms": cycle_ms,
        }


class _NoAdapter:
    name = "none"

    def upgrade_request(self, host: str, port: int) -> bytes:
        raise RuntimeError("no adapter set")

    def open_messages(self, channels: Any, positions: Any) -> list[Message]:
        raise RuntimeError("no adapter set")

    def on_message(self, state: Any, opcode: int, payload: bytes, probe: bool) -> list[Message]:
        raise RuntimeError("no adapter set")


async def _serve(proc: LoadProcess, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    pending: set[asyncio.Task[None]] = set()

    async def run(request_id: int, name: str, args: dict[str, Any]) -> None:
        try:
            handler = getattr(proc, "cmd_" + name)
            result = handler(**args)
            if asyncio.iscoroutine(result):
                result = await result
            pipe.send((request_id, True, result))
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator, which raises it
            pipe.send((request_id, False, f"{type(exc).__name__}: {exc}"))

    def on_command(message: Any) -> None:
        if message is None:  # the coordinator is gone
            if not stopped.done():
                stopped.set_result(None)
            return
        request_id, name, args = message
        if name == "stop":
            pipe.send((request_id, True, {}))
            if not stopped.done():
                stopped.set_result(None)
            return
        task = loop.create_task(run(request_id, name, args))
        pending.add(task)
        task.add_done_callback(pending.discard)

    start_reader(pipe, loop, on_command)
    await stopped
    for task in pending:
        task.cancel()
    for slot in proc.slots:
        if slot.conn is not None:
            slot.conn.abort()
    await asyncio.sleep(0)


def start_reader(pipe: Connection, loop: asyncio.AbstractEventLoop, handle: Any) -> None:
    """Read whole messages from *pipe* in a thread and hand each to *handle* on *loop*
    (None at EOF). A thread, not ``loop.add_reader``: uvloop makes a watched fd
    non-blocking, and ``Connection.recv`` then fails on a message that is not all there."""

    def read_forever() -> None:
        while True:
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                message = None
            try:
                loop.call_soon_threadsafe(handle, message)
            except RuntimeError:  # the loop is closed
                return
            if message is None:
                return

    threading.Thread(target=read_forever, daemon=True).start()


def process_main(
    index: int, sources: Sequence[str], churn_sources: Sequence[str], pipe: Connection
) -> None:
    """Entry point of one load process."""
    import uvloop

    uvloop.run(_serve(LoadProcess(index, sources, churn_sources), pipe))


# --- the coordinator ------------------------------------------------------------------------


class LoadProcessError(RuntimeError):
    def __init__(self, index: int, command: str, why: str) -> None:
        super().__init__(f"load process {index}, command {command}: {why}")


def split_even(items: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """*items* in *parts* contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


class LoadGenerator:
    """Starts and drives the load processes; every method is a bounded command."""

    def __init__(self, processes: int, *, first_source: int = 2) -> None:
        if processes < 1:
            raise ValueError("need at least one load process")
        self.processes = processes
        self.sources = [f"127.0.0.{first_source + i}" for i in range(processes)]
        self._procs: list[Any] = []
        self._pipes: list[Connection] = []
        self._waiting: dict[tuple[int, int], asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)

    @property
    def capacity(self) -> int:
        return self.processes * MAX_PER_PROCESS

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        for i, source in enumerate(self.sources):
            parent, child = ctx.Pipe()
            churn = [f"127.1.{i}.{j}" for j in range(1, 17)]
            proc = ctx.Process(target=process_main, args=(i, [source], churn, child), daemon=True)
            proc.start()
            child.close()
            self._procs.append(proc)
            self._pipes.append(parent)
            start_reader(parent, loop, functools.partial(self._on_reply, i))

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _on_reply(self, index: int, message: Any) -> None:
        if message is None:
            if index >= len(self._procs):
                return  # stopped
            proc = self._procs[index]
            proc.join(1.0)
            why = f"the process died (exit code {proc.exitcode})"
            for (i, _), fut in list(self._waiting.items()):
                if i == index and not fut.done():
                    fut.set_exception(LoadProcessError(index, "?", why))
            return
        request_id, ok, result = message
        fut = self._waiting.pop((index, request_id), None)
        if fut is None or fut.done():
            return
        if ok:
            fut.set_result(result)
        else:
            fut.set_exception(LoadProcessError(index, "?", result))

    async def _call(self, index: int, name: str, wait_s: float, /, **args: Any) -> Any:
        request_id = next(self._ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[(index, request_id)] = fut
        self._pipes[index].send((request_id, name, args))
        try:
            async with asyncio.timeout(wait_s):
                return await fut
        except TimeoutError:
            raise LoadProcessError(index, name, f"no answer within {wait_s} s") from None
        finally:
            self._waiting.pop((index, request_id), None)

    async def _all(
        self,
        name: str,
        wait_s: float,
        /,
        per_process: Sequence[dict[str, Any]] | None = None,
        **args: Any,
    ) -> list[Any]:
        calls = [
            self._call(i, name, wait_s, **(per_process[i] if per_process else args))
            for i in range(self.processes)
        ]
        return list(await asyncio.gather(*calls))

    async def set_adapter(self, adapter: Adapter, host: str, port: int) -> None:
        await self._all("adapter", 30.0, adapter=adapter, host=host, port=port)

    async def open(
        self,
        host: str,
        port: int,
        assignments: Sequence[Sequence[str]],
        *,
        probe_every: int = 0,
        concurrency: int = 500,
        timeout_s: float = 60.0,
    ) -> dict[str, Any]:
        """Open one connection per assignment (its channels), spread over the processes;
        return once all are ready or *timeout_s* passed."""
        if len(assignments) > self.capacity:
            raise ValueError(f"{len(assignments)} connections > capacity {self.capacity}")
        chunks = split_even(list(assignments), self.processes)
        started = time.monotonic()
        results = await self._all(
            "open",
            timeout_s + 30.0,
            per_process=[
                {
                    "host": host,
                    "port": port,
                    "assignments": chunk,
                    "probe_every": probe_every,
                    "concurrency": max(1, concurrency // self.processes),
                    "timeout_s": timeout_s,
                }
                for chunk in chunks
            ],
        )
        return {
            "requested": len(assignments),
            "opened": sum(r["opened"] for r in results),
            "seconds": time.monotonic() - started,
        }

    async def stats(self) -> dict[str, Any]:
        per = await self._all("stats", 30.0)
        out: dict[str, Any] = {"per_process_cpu_s": [p["cpu_s"] for p in per]}
        for key in per[0]:
            values = [p[key] for p in per]
            if isinstance(values[0], dict):
                merged: Counter[str] = Counter()
                for v in values:
                    merged.update(v)
                out[key] = dict(merged)
            else:
                out[key] = sum(values)
        return out

    async def progress(self) -> dict[str, int]:
        per = await self._all("progress", 30.0)
        return {k: sum(p[k] for p in per) for k in per[0]}

    async def latencies(self) -> list[float]:
        return [x for part in await self._all("latencies", 30.0) for x in part]

    async def reset(self) -> None:
        await self._all("reset", 30.0)

    async def verify(self, expected: dict[str, int]) -> dict[str, int]:
        per = await self._all("verify", 60.0, expected=expected)
        return {k: sum(p[k] for p in per) for k in per[0]}

    async def close_all(self, timeout_s: float = 20.0) -> dict[str, Any]:
        per = await self._all("close_all", timeout_s + 30.0, timeout_s=timeout_s)
        return {"aborted": sum(p["aborted"] for p in per)}

    async def reconnect_all(
        self, host: str, port: int, *, concurrency: int = 1000, timeout_s: float = 120.0
    ) -> dict[str, Any]:
        started = time.monotonic()
        per = await self._all(
            "reconnect_all",
            timeout_s + 30.0,
            host=host,
            port=port,
            concurrency=max(1, concurrency // self.processes),
            timeout_s=timeout_s,
        )
        return {
            "reconnected": sum(p["reconnected"] for p in per),
            "retries": sum(p["retries"] for p in per),
            "seconds": time.monotonic() - started,
            "per_process_seconds": [p["seconds"] for p in per],
        }

    async def churn(
        self,
        host: str,
        port: int,
        channels: Sequence[str],
        *,
        rate_per_s: float,
        duration_s: float,
        max_count: int,
        concurrency: int = 200,
        cycle_timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        per = await self._all(
            "churn",
            duration_s + cycle_timeout_s + 30.0,
            host=host,
            port=port,
            channels=list(channels),
            rate_per_s=rate_per_s / self.processes,
            duration_s=duration_s,
            max_count=max(1, max_count // self.processes),
            concurrency=max(1, concurrency // self.processes),
            cycle_timeout_s=cycle_timeout_s,
        )
        errors: Counter[str] = Counter()
        for p in per:
            errors.update(p["errors"])
        return {
            "launched": sum(p["launched"] for p in per),
            "completed": sum(p["completed"] for p in per),
            "failed": sum(p["failed"] for p in per),
            "errors": dict(errors),
            "throttled_ticks": sum(p["throttled_ticks"] for p in per),
            "seconds": max(p["seconds"] for p in per),
            "cycle_ms": [x for p in per for x in p["cycle_ms"]],
        }

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self._all("stop", 10.0)
        for pipe in self._pipes:
            pipe.close()
        for proc in self._procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self._procs.clear()
        self._pipes.clear()
