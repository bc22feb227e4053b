"""The connections of one load process and the commands that drive them.

A load process holds up to :data:`MAX_PER_PROCESS` clients (bench/loadgen/client.py), bound
to its own loopback source addresses (the ephemeral port range is per source/destination
pair). Each ``cmd_<name>`` method is one command of the pipe protocol
(bench/loadgen/pipe.py); every command is bounded in count (the caller passes the
connections) and in time (it takes a timeout and answers when it passes, with what was
reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import time
from collections import Counter
from collections.abc import Sequence

from bench.loadgen.adapters import (
    Adapter,
    ClientState,
    CountsErrors,
    Message,
    OpensFast,
    Positions,
)
from bench.loadgen.churn import ChurnPlan, ChurnRun
from bench.loadgen.client import Client, Slot
from bench.loadgen.connecting import READY_TIMEOUT_S, ConnectRound
from bench.loadgen.results import (
    ChurnReply,
    CloseReply,
    OpenReply,
    ProcessStats,
    Progress,
    ReconnectReply,
    ShortClient,
    Verify,
)

MAX_PER_PROCESS = 19_000
"""Sockets per load process: the open-file limit is 20,000, with room for pipes."""
_SHORT_SAMPLES = 10


def _socket_state(conn: Client) -> str:
    """Where a slot's current connection is: "open", "closing", "lost", "no transport", or
    open on a descriptor that fails or now belongs to another socket (the load generator's
    own socket was closed under it)."""
    if conn.lost:
        return "lost"
    transport = conn.transport
    if transport is None:
        return "no transport"
    if conn.closing or transport.is_closing():
        return "closing"
    sock = transport.get_extra_info("socket")
    try:
        now = sock.getsockname() if sock is not None else None
    except OSError as exc:
        return f"open, its descriptor failing ({exc.errno})"
    if now != transport.get_extra_info("sockname"):
        return "open, its descriptor another socket's"
    return "open"


def cpu_seconds() -> float:
    """This process's CPU time, user + system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class NoAdapter:
    """The adapter until the ``adapter`` command set one: any use is a caller's mistake."""

    name = "none"

    def upgrade_request(self, host: str, port: int) -> bytes:
        raise RuntimeError("no adapter set")

    def open_messages(self, channels: Sequence[str], positions: Positions | None) -> list[Message]:
        raise RuntimeError("no adapter set")

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        raise RuntimeError("no adapter set")


class LoadProcess:
    """See the module docstring; the clients move the counters, the commands read them."""

    def __init__(self, index: int, sources: Sequence[str], churn_sources: Sequence[str]) -> None:
        self.index = index
        self.sources = list(sources)
        self.churn_sources = list(churn_sources)
        self.adapter: Adapter = NoAdapter()
        self.upgrade = b""
        self.target = ("", 0)
        """The host and port the upgrade requests name."""
        self.fast: OpensFast | None = None
        """The adapter, when its connections open fast (the upgrade request is per connection)."""
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
        """Connect attempts after a failed one (reconnect_all, and open with retry)."""
        self.ready_timeout_s = READY_TIMEOUT_S
        """How long a retrying connect waits to be ready before it tries again."""
        self.churn_lost: dict[Client, asyncio.Future[None]] = {}
        """Churn cycles waiting for the server to close their connection."""
        self._all_lost: asyncio.Event | None = None

    # counters kept by the clients

    def mark_ready(self, client: Client) -> None:
        slot = client.slot
        if slot.conn is client and not slot.ready:
            slot.ready = True
            slot.ever_ready = True
            self.ready_count += 1
        client.settle(True)

    def on_lost(self, client: Client) -> None:
        waiter = self.churn_lost.pop(client, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._all_lost is not None and self.open_count <= 0:
            self._all_lost.set()

    # commands

    def cmd_adapter(self, adapter: Adapter, host: str, port: int) -> None:
        self.adapter = adapter
        self.upgrade = adapter.upgrade_request(host, port)
        self.target = (host, port)
        self.fast = adapter if isinstance(adapter, OpensFast) and adapter.fast_open else None

    async def cmd_open(
        self,
        host: str,
        port: int,
        assignments: Sequence[Sequence[str]],
        probe_every: int,
        concurrency: int,
        timeout_s: float,
        retry: bool = False,
    ) -> OpenReply:
        """One client per assignment (its channels); every *probe_every*-th one measures
        latency; with *retry*, failed attempts are made again until the deadline."""
        if len(self.slots) + len(assignments) > MAX_PER_PROCESS:
            raise ValueError(f"at most {MAX_PER_PROCESS} connections per load process")
        start_index = len(self.slots)
        new = [
            Slot(channels, probe_every > 0 and (start_index + i) % probe_every == 0)
            for i, channels in enumerate(assignments)
        ]
        self.slots.extend(new)
        started = time.monotonic()
        retries0 = self.retries
        ok = await ConnectRound(
            self, host, port, new, concurrency=concurrency, deadline=started + timeout_s,
            retry=retry, ready_timeout_s=self.ready_timeout_s,
        ).run()  # fmt: skip
        gc.freeze()  # the clients live long: keep them out of every later collection
        return {
            "opened": ok,
            "seconds": time.monotonic() - started,
            "retries": self.retries - retries0,
        }

    def cmd_progress(self) -> Progress:
        return {"messages": self.messages, "open": self.open_count, "ready": self.ready_count}

    def cmd_stats(self) -> ProcessStats:
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
        errors, error_codes = 0, {}
        if isinstance(self.adapter, CountsErrors):
            errors, error_codes = self.adapter.errors, dict(self.adapter.error_codes)
        return {
            "clients": len(self.slots),
            "open": self.open_count,
            "ready": self.ready_count,
            "lost_unexpectedly": self.lost_unexpectedly,
            "adapter_errors": errors,
            "adapter_error_codes": error_codes,
            "connect_failures": dict(self.connect_failures),
            "handshake_failures": dict(self.handshake_failures),
            "closes": {str(k): v for k, v in self.closes.items()},
            "cpu_s": cpu_seconds(),
            "publications": totals["publications"],
            "duplicates": totals["duplicates"],
            "gaps": totals["gaps"],
            "subscribed": totals["subscribed"],
            "recovered": totals["recovered"],
            "recovery_failed": totals["recovery_failed"],
            "latency_pending": totals["latency_pending"],
        }

    def cmd_latencies(self) -> list[float]:
        """The probes' latency samples since the last call (drained)."""
        out: list[float] = []
        for slot in self.slots:
            lat = slot.state.latencies_ms
            if lat:
                out.extend(lat)
                lat.clear()
        return out

    def cmd_reset(self) -> None:
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
        if isinstance(self.adapter, CountsErrors):
            self.adapter.errors = 0
            self.adapter.error_codes.clear()

    def cmd_verify(self, expected: dict[str, int]) -> Verify:
        """Compare what each client got (duplicates aside) with *expected*: publications
        per channel since the last reset."""
        missing = extra = short = exact = never_ready = missing_never_ready = 0
        samples: list[ShortClient] = []
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
                if len(samples) < _SHORT_SAMPLES:
                    positions: dict[str, list[str | int]] = {
                        ch: [e, o] for ch, (e, o) in s.positions.items()
                    }
                    conn = slot.conn
                    samples.append({
                        "channels": list(s.channels), "want": want, "got": got,
                        "ready": slot.ready, "positions": positions,
                        "socket": "none" if conn is None else _socket_state(conn),
                    })  # fmt: skip
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
            "short_samples": samples,
        }

    async def cmd_close_all(self, timeout_s: float) -> CloseReply:
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
    ) -> ReconnectReply:
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
        self.target = (host, port)
        retries0 = self.retries
        ok = await ConnectRound(
            self, host, port, self.slots, concurrency=concurrency,
            deadline=started + timeout_s, retry=True, ready_timeout_s=self.ready_timeout_s,
        ).run()  # fmt: skip
        gc.freeze()
        return {
            "reconnected": ok,
            "seconds": time.monotonic() - started,
            "retries": self.retries - retries0,
        }

    async def cmd_churn(self, host: str, port: int, plan: ChurnPlan) -> ChurnReply:
        """Open, subscribe and close connections as *plan* says (bench/loadgen/churn.py)."""
        return await ChurnRun(self, host, port, plan).run()
