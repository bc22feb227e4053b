"""A client swarm, publishers and a delivery checker for end-to-end failover tests.

Many clients in one process, each a raw websocket (the ``websockets`` library, no helper
layer) that follows docs/protocol.md's client algorithm exactly: a position (epoch, offset)
per channel kept across reconnects, subscribe with ``since``, ``none``/``failed`` take the
reply's position, ``recovered`` keeps it, a ``pub`` at or below the position is dropped, one
above ``position + 1`` closes the socket and reconnects; close codes go through
``should_reconnect``, a lost socket or a failed handshake is retried with full-jitter backoff
(a close reason's ``retry_ms`` hint added), and a socket silent for longer than ``ping_interval_ms +
pong_timeout_ms`` is dropped as deaf.

    swarm = Swarm(url, plan)                       # plan: which channels each client wants
    await swarm.start()                            # returns once every client is live
    pool = PublisherPool(redis_url, channels, rates)
    pool.start()                                   # one task per channel: {"seq": n}
    ...faults...
    await pool.stop(); finals = await pool.publish_final()
    await swarm.wait_final(finals, timeout_s=60)   # lost tails are counted, not raised
    report = build_report(swarm, pool, faults)     # the table; report.violations() must be {}

The checker (:class:`ChannelCheck`) sees, per client and channel, every subscribe reply
(recovery, epoch, offset) and every applied ``pub`` (offset, seq). Between resets (a reply
with ``failed`` or ``none``) the applied seqs must go up by exactly one: a jump is a silent
gap, a seq already applied in the segment a duplicate, an older one a reorder. Each client
must end with each channel's final seq (else: a lost tail).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.typing import Subprotocol

from herald_contract.errors import PublishFailed
from publisher.publish import Publisher
from socketsrv.protocol.codes import retry_hint_s, should_reconnect

JSON_PROTOCOL = Subprotocol("herald.v1.json")
LOST_SOCKET = 1006
"""The code recorded when the socket ended without a close frame (as a browser reports it)."""
RETRYABLE_SUBSCRIBE_ERRORS = {429, 500, 503}


# -- the channel mix ---------------------------------------------------------------------------


def zipf_weights(count: int, s: float = 1.0) -> list[float]:
    """Weights 1/k^s for ranks 1..count, normalised to sum 1."""
    raw = [1.0 / (k**s) for k in range(1, count + 1)]
    total = sum(raw)
    return [w / total for w in raw]


def zipf_plan(
    clients: int,
    *,
    questions: int = 40,
    per_client: tuple[int, int] = (3, 5),
    new_questions_share: float = 0.3,
    seed: int = 10,
) -> list[list[str]]:
    """For each client, 3-5 channels ``question:1..N`` drawn (without replacement) with Zipf
    weights, plus ``questions:new`` for some: ``question:1`` is the busiest channel."""
    rng = random.Random(seed)
    names = [f"question:{i}" for i in range(1, questions + 1)]
    weights = zipf_weights(questions)
    plan: list[list[str]] = []
    for _ in range(clients):
        k = rng.randint(*per_client)
        chosen: list[str] = []
        pool, pool_weights = list(names), list(weights)
        for _ in range(k):
            pick = rng.choices(range(len(pool)), weights=pool_weights)[0]
            chosen.append(pool.pop(pick))
            pool_weights.pop(pick)
        if rng.random() < new_questions_share:
            chosen.append("questions:new")
        plan.append(sorted(chosen))
    return plan


def subscriber_counts(plan: Sequence[Sequence[str]]) -> Counter[str]:
    return Counter(channel for wanted in plan for channel in wanted)


# -- the checker --------------------------------------------------------------------------------


@dataclass
class ChannelCheck:
    """One client's record of one channel, checked as it arrives (see the module docstring)."""

    channel: str
    epoch: str | None = None
    offset: int = 0
    """The position: the last offset applied in ``epoch`` (the protocol's client state)."""
    last_seq: int | None = None
    """The last seq applied in the current segment (None right after a reset)."""
    segment_first: int | None = None
    max_seq: int = 0
    """The highest seq ever applied: the lost-tail check compares it with the final seq."""
    applied: int = 0
    gaps: int = 0
    missing: int = 0
    """Publications skipped by the gaps (sum of the jumps minus one)."""
    duplicates: int = 0
    reorders: int = 0
    replays_after_reset: int = 0
    """Seqs at or below one applied before a ``failed`` reset: explicit, not counted as errors."""
    dropped_offsets: int = 0
    """pubs at or below the position, dropped by the algorithm (harmless by the protocol)."""
    gap_closes: int = 0
    """pubs above position + 1: the client closed and reconnected (never silent)."""
    violations: int = 0
    """Frames the protocol rules out: a pub without a seq."""
    recovered_into_new_epoch: int = 0
    """``recovered`` replies naming an epoch other than the position's."""
    holes: set[int] = field(default_factory=set)
    """Seqs of the current segment that a gap skipped (a late one is a reorder)."""
    recoveries: Counter[str] = field(default_factory=Counter)
    tail: deque[tuple[Any, ...]] = field(default_factory=lambda: deque(maxlen=24))
    anomalies: list[str] = field(default_factory=list)

    def _note(self, what: str) -> None:
        if len(self.anomalies) < 20:
            self.anomalies.append(f"{what}; last events {list(self.tail)}")

    def on_reply(self, recovery: str, epoch: str, offset: int) -> None:
        self.tail.append(("reply", recovery, epoch, offset, self.epoch, self.offset))
        self.recoveries[recovery] += 1
        if recovery == "recovered":
            # The reply names the channel's current epoch; the position is kept as it is
            # (docs/protocol.md). Another epoch here is a stream continued across a failover
            # (a fork): counted, and the seqs that follow are checked like any others.
            self.recovered_into_new_epoch += int(epoch != self.epoch)
            return
        self.epoch, self.offset = epoch, offset
        self.last_seq = self.segment_first = None
        self.holes.clear()

    def on_pub(self, offset: int, data: Any) -> bool:
        """Apply one pub by the algorithm; False when it is a gap (close and reconnect)."""
        if offset <= self.offset:
            self.dropped_offsets += 1
            return True
        if offset > self.offset + 1:
            self.gap_closes += 1
            self.tail.append(("gap-close", offset, self.offset))
            return False
        self.offset = offset
        seq = data.get("seq") if isinstance(data, dict) else None
        if not isinstance(seq, int):
            self.violations += 1
            self._note(f"pub at {offset} carries no seq: {data!r}")
            return True
        self.tail.append(("pub", offset, seq))
        self.applied += 1
        last = self.last_seq
        if last is None:
            if seq <= self.max_seq:
                self.replays_after_reset += 1
            self.segment_first = self.last_seq = seq
        elif seq == last + 1:
            self.last_seq = seq
        elif seq > last + 1:
            self.gaps += 1
            self.missing += seq - last - 1
            self._note(f"silent gap: seq {last} then {seq} at offset {offset}")
            if len(self.holes) < 10_000:
                self.holes.update(range(last + 1, seq))
            self.last_seq = seq
        elif seq in self.holes:  # one a gap skipped, arriving late
            self.holes.discard(seq)
            self.reorders += 1
            self._note(f"reorder: seq {seq} at offset {offset} after {last}")
        elif self.segment_first is not None and seq >= self.segment_first:
            self.duplicates += 1
            self._note(f"duplicate: seq {seq} again at offset {offset} (last {last})")
        else:
            self.reorders += 1
            self._note(f"reorder: seq {seq} at offset {offset} after {last}")
        self.max_seq = max(self.max_seq, seq)
        return True


# -- one client ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.1
    cap_s: float = 2.0
    reset_after_s: float = 5.0
    """A connection that lasted this long resets the attempt count."""

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0.0, min(self.cap_s, self.base_s * 2**attempt))


class SwarmClient:
    """One browser-like connection that wants *channels* for the whole run."""

    def __init__(
        self,
        index: int,
        url: str,
        channels: Sequence[str],
        *,
        backoff: Backoff,
        local_addr: tuple[str, int] | None = None,
    ) -> None:
        self.index = index
        self.url = url
        self.wanted = list(channels)
        self.checks = {channel: ChannelCheck(channel) for channel in self.wanted}
        self.live: set[str] = set()
        self.backoff = backoff
        self.local_addr = local_addr
        self.rng = random.Random(index)
        self.ws: ClientConnection | None = None
        self.last_frame = time.monotonic()
        self.deaf_after_s = 35.0
        self.closes: Counter[str] = Counter()
        self.connect_failures: Counter[str] = Counter()
        self.subscribe_errors: Counter[int] = Counter()
        self.sessions = 0
        self.stopped_by: int | None = None
        self.stopping = False
        self._next_id = 0
        self._pending: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def is_live(self) -> bool:
        return self.ws is not None and len(self.live) == len(self.wanted)

    @property
    def reconnects(self) -> int:
        return max(0, self.sessions - 1)

    async def run(self) -> None:
        attempt = 0
        while not self.stopping:
            extra: dict[str, Any] = {}
            if self.local_addr is not None:
                extra["local_addr"] = self.local_addr
            try:
                ws = await connect(
                    self.url,
                    subprotocols=[JSON_PROTOCOL],
                    ping_interval=None,
                    max_size=None,
                    open_timeout=20,
                    close_timeout=2,
                    compression=None,
                    **extra,
                )
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.connect_failures[type(exc).__name__] += 1
                await asyncio.sleep(self.backoff.delay(attempt, self.rng))
                attempt += 1
                continue
            began = time.monotonic()
            self.sessions += 1
            code, reason = await self._session(ws)
            self.closes[str(code)] += 1
            if self.stopped():  # stop() ran while the session was open
                return
            if isinstance(code, int) and not should_reconnect(code):
                self.stopped_by = code
                return
            if time.monotonic() - began > self.backoff.reset_after_s:
                attempt = 0
            hint = retry_hint_s(reason)  # 4000, 4003, 4007: the server's spread
            await asyncio.sleep(hint + self.backoff.delay(attempt, self.rng))
            attempt += 1

    async def _session(self, ws: ClientConnection) -> tuple[int | str, str]:
        """One socket from open to close; the close code (or ``"gap"``) and reason."""
        self.ws, self.live, self._pending = ws, set(), {}
        self.last_frame = time.monotonic()
        gap = False
        try:
            await self._send(ws, {"op": "connect", "id": self._id()})
            async for raw in ws:
                self.last_frame = time.monotonic()
                frame = json.loads(raw)
                if not await self._on_frame(ws, frame):
                    gap = True
                    break
        except ConnectionClosed:
            pass
        except (OSError, TimeoutError):
            pass
        finally:
            self.ws = None
            self.live = set()
            for task in list(self._tasks):
                task.cancel()
            if ws.transport is not None:
                ws.transport.abort()
        if gap:
            return "gap", ""
        rcvd = ws.protocol.close_rcvd
        if rcvd is None:
            return (LOST_SOCKET, "")
        return rcvd.code, rcvd.reason

    def _id(self) -> int:
        self._next_id = self._next_id % 2_000_000_000 + 1
        return self._next_id

    async def _send(self, ws: ClientConnection, command: dict[str, Any]) -> None:
        await ws.send(json.dumps(command))

    async def _subscribe(self, ws: ClientConnection, channel: str) -> None:
        ident = self._id()
        self._pending[ident] = channel
        command: dict[str, Any] = {"op": "subscribe", "id": ident, "channel": channel}
        check = self.checks[channel]
        if check.epoch is not None:
            command["since"] = {"epoch": check.epoch, "offset": check.offset}
        await self._send(ws, command)

    def _retry_subscribe(self, ws: ClientConnection, channel: str, delay_s: float) -> None:
        async def later() -> None:
            await asyncio.sleep(delay_s)
            with contextlib.suppress(ConnectionClosed, OSError):
                await self._subscribe(ws, channel)

        task = asyncio.ensure_future(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_frame(self, ws: ClientConnection, frame: dict[str, Any]) -> bool:
        kind = frame.get("type")
        if kind == "pub":
            channel = frame.get("channel")
            if channel not in self.live:
                return True  # unsubscribed or stray: dropped by the algorithm
            return self.checks[channel].on_pub(frame["offset"], frame.get("data"))
        if kind == "hb":
            await self._send(ws, {"op": "pong"})
            return True
        if kind == "reply":
            ident = frame.get("id")
            channel = self._pending.pop(ident, None) if isinstance(ident, int) else None
            result = frame.get("result") or {}
            if channel is None:  # the connect reply
                if "ping_interval_ms" in result:
                    self.deaf_after_s = (
                        result["ping_interval_ms"] + result["pong_timeout_ms"]
                    ) / 1000
                    for wanted in self.wanted:
                        await self._subscribe(ws, wanted)
                return True
            self.checks[channel].on_reply(result["recovery"], result["epoch"], result["offset"])
            self.live.add(channel)
            return True
        if kind == "error":
            ident = frame.get("id")
            code = int(frame.get("code", 0))
            channel = self._pending.pop(ident, None) if isinstance(ident, int) else None
            self.subscribe_errors[code] += 1
            if channel is not None and code in RETRYABLE_SUBSCRIBE_ERRORS:
                self._retry_subscribe(ws, channel, self.rng.uniform(0.1, 0.5))
            return True
        return True  # a frame type this client does not know: ignored

    def abort_if_deaf(self, now: float) -> bool:
        ws = self.ws
        if ws is not None and now - self.last_frame > self.deaf_after_s:
            if ws.transport is not None:
                ws.transport.abort()
            return True
        return False

    def stopped(self) -> bool:
        return self.stopping

    async def stop(self) -> None:
        self.stopping = True
        ws = self.ws
        if ws is not None and ws.transport is not None:
            ws.transport.abort()


# -- the swarm --------------------------------------------------------------------------------


class Swarm:
    """Many :class:`SwarmClient` in this process, started at a bounded rate."""

    def __init__(
        self,
        url: str,
        plan: Sequence[Sequence[str]],
        *,
        backoff: Backoff = Backoff(),
        source_addresses: Sequence[str] = (),
        start_concurrency: int = 50,
    ) -> None:
        self.clients = [
            SwarmClient(
                index,
                url,
                wanted,
                backoff=backoff,
                local_addr=(
                    (source_addresses[index % len(source_addresses)], 0)
                    if source_addresses
                    else None
                ),
            )
            for index, wanted in enumerate(plan)
        ]
        self.start_concurrency = start_concurrency
        self.deaf_aborts = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.Task[None] | None = None

    @property
    def checks(self) -> Iterable[tuple[SwarmClient, ChannelCheck]]:
        for client in self.clients:
            for check in client.checks.values():
                yield client, check

    def live_count(self) -> int:
        return sum(1 for client in self.clients if client.is_live)

    async def start(self, timeout_s: float = 120.0) -> None:
        """Start every client, a batch at a time; return once all are live."""
        self._watchdog = asyncio.ensure_future(self._watch())
        step = self.start_concurrency
        for first in range(0, len(self.clients), step):
            batch = self.clients[first : first + step]
            self._tasks.extend(asyncio.ensure_future(c.run()) for c in batch)
            await wait_until(
                lambda b=batch: all(c.is_live for c in b),  # type: ignore[misc]
                f"clients {first}..{first + len(batch) - 1} live",
                timeout_s,
            )

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            self.deaf_aborts += sum(1 for c in self.clients if c.abort_if_deaf(now))

    def caught_up(self, targets: dict[str, int]) -> bool:
        """Every client live on every channel, each at or past *targets* (seq per channel)."""
        for client in self.clients:
            if not client.is_live:
                return False
            for channel, check in client.checks.items():
                if check.max_seq < targets.get(channel, 0):
                    return False
        return True

    def behind(self, targets: dict[str, int]) -> list[tuple[int, str, int, int]]:
        """(client, channel, max seq applied, target) of every subscription short of target."""
        return [
            (client.index, check.channel, check.max_seq, targets[check.channel])
            for client, check in self.checks
            if check.max_seq < targets.get(check.channel, 0)
        ]

    async def wait_final(self, finals: dict[str, int], timeout_s: float) -> float | None:
        """Wait until every client applied each channel's final seq; seconds taken or None."""
        began = time.monotonic()
        deadline = began + timeout_s
        while time.monotonic() < deadline:
            if self.caught_up(finals):
                return time.monotonic() - began
            await asyncio.sleep(0.1)
        return None

    async def stop(self, timeout_s: float = 20.0) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for client in self.clients:
            await client.stop()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout_s)
        if self._watchdog is not None:
            await asyncio.gather(self._watchdog, return_exceptions=True)


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(0.05)


# -- the publishers ---------------------------------------------------------------------------


class PublishGaveUp(AssertionError):
    pass


class PublisherPool:
    """One task per channel publishing ``{"seq": n}`` with ``event_id=f"{channel}:{n}"``,
    retrying the same n until it is acknowledged, through *publishers* :class:`Publisher`
    objects (each task uses one). Bounded: at most ``max_per_channel`` seqs per channel, and a
    publication that is not acknowledged within ``retry_deadline_s`` stops the run."""

    def __init__(
        self,
        redis_url: str,
        rates: dict[str, float],
        *,
        publishers: int = 2,
        max_per_channel: int = 10_000,
        retry_deadline_s: float = 60.0,
        **publisher_options: Any,
    ) -> None:
        self.rates = rates
        self.publishers = [
            Publisher(redis_url, **publisher_options) for _ in range(max(1, publishers))
        ]
        self.max_per_channel = max_per_channel
        self.retry_deadline_s = retry_deadline_s
        self.acked: dict[str, int] = dict.fromkeys(rates, 0)
        self.started: dict[str, int] = dict.fromkeys(rates, 0)
        self.positions: dict[str, dict[int, tuple[str, int, bool]]] = {c: {} for c in rates}
        """seq -> (epoch, offset, duplicate) as acknowledged, per channel."""
        self.failures: Counter[str] = Counter()
        self.retries = 0
        self.duplicates_acked = 0
        self.close_timeouts: list[str] = []
        self.unexpected: list[str] = []
        self.unexpected_count = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def total_acked(self) -> int:
        return sum(self.acked.values())

    async def publish_seq(self, channel: str, seq: int, publisher: Publisher) -> None:
        """Publish seq *seq* on *channel* until acknowledged (same event id every time)."""
        self.started[channel] = seq
        deadline = time.monotonic() + self.retry_deadline_s
        attempt = 0
        while True:
            try:
                result = await publisher.publish(channel, {"seq": seq}, event_id=f"{channel}:{seq}")
                break
            except Exception as exc:  # counted; an unexpected type fails the test
                self.failures[type(exc).__name__] += 1
                if not isinstance(exc, PublishFailed | redis.RedisError | OSError):
                    # Publisher.publish documents PublishFailed for Redis trouble: anything
                    # else escaping it is a bug; retried here so the run can finish and
                    # report, and counted in ``unexpected`` (which must stay empty).
                    if len(self.unexpected) < 20:
                        self.unexpected.append(f"{channel} seq {seq}: {exc!r}")
                    self.unexpected_count += 1
                if time.monotonic() > deadline:
                    raise PublishGaveUp(
                        f"{channel} seq {seq} not acknowledged within {self.retry_deadline_s} s:"
                        f" {exc}"
                    ) from exc
                attempt += 1
                self.retries += 1
                await asyncio.sleep(min(0.5, 0.02 * 2**attempt) * random.random() + 0.02)
        self.duplicates_acked += int(result.duplicate)
        self.positions[channel][seq] = (
            result.position.epoch,
            result.position.offset,
            result.duplicate,
        )
        self.acked[channel] = seq

    async def _run(self, channel: str, publisher: Publisher) -> None:
        period = 1.0 / self.rates[channel]
        rng = random.Random(channel)
        await asyncio.sleep(rng.uniform(0, period))
        while not self._stop.is_set() and self.acked[channel] < self.max_per_channel:
            await self.publish_seq(channel, self.acked[channel] + 1, publisher)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), period * rng.uniform(0.5, 1.5))

    async def warm_up(self) -> None:
        """Seq 1 on every channel, before any client subscribes (each channel has its epoch).

        The first publication of each publisher goes alone: redis-py's asyncio cluster client
        breaks when many commands race its first connection (``_writer`` is None)."""
        channels = list(self.rates)
        for i, publisher in enumerate(self.publishers[: len(channels)]):
            await self.publish_seq(channels[i], 1, publisher)
        await asyncio.gather(
            *(
                self.publish_seq(channel, 1, self.publishers[i % len(self.publishers)])
                for i, channel in enumerate(channels)
                if self.acked[channel] == 0
            )
        )

    def start(self) -> None:
        self._tasks = [
            asyncio.ensure_future(self._run(channel, self.publishers[i % len(self.publishers)]))
            for i, channel in enumerate(self.rates)
        ]

    def check_running(self) -> None:
        """Raise what made a publishing task stop early (a publication never acknowledged)."""
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def stop(self) -> None:
        self._stop.set()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def publish_final(self) -> dict[str, int]:
        """One more seq per channel, after the faults; the final seq of each channel."""
        await asyncio.gather(
            *(
                self.publish_seq(channel, self.acked[channel] + 1, self.publishers[0])
                for channel in self.rates
            )
        )
        return dict(self.acked)

    async def close(self, timeout_s: float = 20.0) -> None:
        """Cancel the tasks and close the publishers, bounded: what does not finish within
        *timeout_s* is left behind (reported in ``close_timeouts``) rather than hang teardown."""
        for task in self._tasks:
            task.cancel()
        steps: list[tuple[str, Any]] = [
            ("tasks", asyncio.gather(*self._tasks, return_exceptions=True))
        ]
        steps += [(f"publisher {i}", p.close()) for i, p in enumerate(self.publishers)]
        for name, step in steps:
            try:
                await asyncio.wait_for(step, timeout_s)
            except TimeoutError:
                self.close_timeouts.append(name)


def zipf_rates(channels: Sequence[str], base: float, hot_factor: float = 3.0) -> dict[str, float]:
    """Publications per second per channel: *base* for each, up to *hot_factor* x base for
    the first (busiest) ones, following their Zipf rank."""
    weights = zipf_weights(len(channels))
    top = weights[0]
    return {
        channel: base * (1 + (hot_factor - 1) * weight / top)
        for channel, weight in zip(channels, weights, strict=True)
    }


# -- faults and recovery times ----------------------------------------------------------------


@dataclass
class FaultRecord:
    name: str
    started: float
    done: float | None = None
    """When the fault's own operation returned (promotion seen, host back in rotation)."""
    recovered: float | None = None
    """When every client was live and had applied a publication started after the fault."""
    targets: dict[str, int] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        return {
            "fault": self.name,
            "operation_s": None if self.done is None else round(self.done - self.started, 2),
            "all_clients_recovered_s": (
                None if self.recovered is None else round(self.recovered - self.started, 2)
            ),
        }


class FaultClock:
    """Times each fault from its start to all clients recovered (polled in the background)."""

    def __init__(self, swarm: Swarm, pool: PublisherPool, *, timeout_s: float = 90.0) -> None:
        self.swarm = swarm
        self.pool = pool
        self.timeout_s = timeout_s
        self.faults: list[FaultRecord] = []

    def begin(self, name: str) -> FaultRecord:
        # A publication *started* after this moment: the next seq of every channel.
        targets = {channel: seq + 1 for channel, seq in self.pool.started.items()}
        record = FaultRecord(name, time.monotonic(), targets=targets)
        self.faults.append(record)
        return record

    async def wait_recovered(self, record: FaultRecord) -> None:
        """Until every client caught up with the fault's targets (bounded; None when not)."""
        deadline = record.started + self.timeout_s
        while time.monotonic() < deadline:
            if self.swarm.caught_up(record.targets):
                record.recovered = time.monotonic()
                return
            self.pool.check_running()
            await asyncio.sleep(0.1)

    async def run(self, name: str, operation: Callable[[], Any]) -> FaultRecord:
        """Start the fault, run *operation* (blocking: in a thread), wait for recovery."""
        record = self.begin(name)
        await asyncio.to_thread(operation)
        record.done = time.monotonic()
        await self.wait_recovered(record)
        return record


# -- the report --------------------------------------------------------------------------------


MUST_BE_ZERO = (
    "gaps",
    "duplicates",
    "reorders",
    "lost_tails",
    "protocol_violations",
    "publish_unexpected_errors",
)


def build_report(
    swarm: Swarm,
    pool: PublisherPool,
    faults: Sequence[FaultRecord],
    finals: dict[str, int],
    *,
    final_wait_s: float | None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    closes: Counter[str] = Counter()
    connect_failures: Counter[str] = Counter()
    subscribe_errors: Counter[str] = Counter()
    recoveries: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    failed_channels: Counter[str] = Counter()
    lost: list[tuple[int, str, int, int]] = []
    anomalies: list[str] = []
    for client in swarm.clients:
        closes.update(client.closes)
        connect_failures.update(client.connect_failures)
        subscribe_errors.update({str(k): v for k, v in client.subscribe_errors.items()})
        totals["reconnects"] += client.reconnects
        totals["stopped_clients"] += int(client.stopped_by is not None)
        for check in client.checks.values():
            recoveries.update(check.recoveries)
            failed_channels[check.channel] += check.recoveries["failed"]
            for name in (
                "applied",
                "gaps",
                "missing",
                "duplicates",
                "reorders",
                "replays_after_reset",
                "dropped_offsets",
                "gap_closes",
                "violations",
                "recovered_into_new_epoch",
            ):
                totals[name] += getattr(check, name)
            if check.max_seq != finals.get(check.channel, check.max_seq):
                lost.append((client.index, check.channel, check.max_seq, finals[check.channel]))
            for note in check.anomalies[:3]:
                if len(anomalies) < 30:
                    anomalies.append(f"client {client.index} {check.channel}: {note}")
    report: dict[str, Any] = {
        "clients": len(swarm.clients),
        "subscriptions": sum(len(c.wanted) for c in swarm.clients),
        "channels": len(pool.rates),
        "publications_acked": pool.total_acked,
        "publish_retries": pool.retries,
        "publish_failures_by_type": dict(pool.failures),
        "publish_unexpected_errors": pool.unexpected_count,
        "publish_unexpected_examples": pool.unexpected[:5],
        "publish_acks_as_duplicate": pool.duplicates_acked,
        "deliveries_checked": totals["applied"],
        "gaps": totals["gaps"],
        "missing_in_gaps": totals["missing"],
        "duplicates": totals["duplicates"],
        "reorders": totals["reorders"],
        "lost_tails": len(lost),
        "protocol_violations": totals["violations"],
        "recoveries": dict(recoveries),
        "recovered_into_new_epoch": totals["recovered_into_new_epoch"],
        "failed_by_channel": {c: n for c, n in failed_channels.items() if n},
        "replays_after_failed_reset": totals["replays_after_reset"],
        "dropped_duplicate_offsets": totals["dropped_offsets"],
        "gap_closes_by_client": totals["gap_closes"],
        "closes_by_code": dict(sorted(closes.items())),
        "connect_failures": dict(connect_failures),
        "subscribe_errors_by_code": dict(subscribe_errors),
        "reconnects": totals["reconnects"],
        "deaf_socket_aborts": swarm.deaf_aborts,
        "clients_stopped_by_close_code": totals["stopped_clients"],
        "faults": [fault.as_row() for fault in faults],
        "final_seqs_reached_s": None if final_wait_s is None else round(final_wait_s, 2),
        "lost_tail_examples": lost[:10],
        "anomaly_examples": anomalies,
    }
    if extra:
        report.update(extra)
    return report


def violations(report: dict[str, Any]) -> dict[str, Any]:
    """The counts that must be 0 but are not (empty: the invariant holds)."""
    return {name: report[name] for name in MUST_BE_ZERO if report[name]}


def format_report(title: str, report: dict[str, Any]) -> str:
    width = max(len(k) for k in report) + 2
    lines = [f"== {title}"]
    for key, value in report.items():
        if key in ("faults", "lost_tail_examples", "anomaly_examples"):
            continue
        lines.append(f"  {key:<{width}} {value}")
    lines.append("  faults (time from the fault's start):")
    for row in report["faults"]:
        lines.append(
            f"    {row['fault']:<34} operation {row['operation_s']} s,"
            f" all clients recovered {row['all_clients_recovered_s']} s"
        )
    for key in ("lost_tail_examples", "anomaly_examples"):
        for item in report[key]:
            lines.append(f"  {key[:-9]}: {item}")
    return "\n".join(lines)
