"""The outbox relay: publishes committed outbox rows to the bus, in order, never one twice.

Guarantees:

* **Nothing lost.** A row stays unpublished (``published_at`` NULL) until the bus accepted
  it. While the bus is down the relay retries the oldest row with a capped exponential
  backoff (``relay_poll_interval_s`` doubling up to ``relay_retry_max_s``), and later rows
  wait behind it.
* **In order.** Rows go out in ``id`` order, one at a time. On SQLite writers are serialized,
  so ``id`` order is commit order. On PostgreSQL ids are taken at insert time, so two
  concurrent transactions may commit in the other order; a row committed late behind a
  higher id already published is still published, a little out of order. Payloads carry
  state with versions (:mod:`qasite.domain.events`), which makes that harmless; writes on one
  post are serialized by its row lock, so one post's score versions are in order.
* **Bounded.** Published rows are deleted once older than ``retention_s`` (a day by
  default), checked at most every ``prune_interval_s`` when the relay is idle.
* **Never twice.** Each row is published with its ``event_id``: the bus remembers event ids
  (``idempotency_ttl_s``, a day by default), so a row published again after a crash between
  the publish and the ``published_at`` mark, or by a second relay, is not delivered again.
  On PostgreSQL one relay drains at a time (a transaction-scoped advisory lock), so several
  service processes do not interleave.

The bus is anything with ``publish(channel, data, *, event_id)``: a
:class:`publisher.publish.Publisher` over Redis, or :class:`PackedBusSink` around the socket
fleet's in-process bus in embedded mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from herald_contract.envelope import pack_data
from herald_contract.errors import HeraldPublishError, InvalidChannel, InvalidPayload
from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import default_namespaces
from qasite.core.db import Database
from qasite.core.metrics import QAMetrics, build_metrics
from qasite.domain.models import OutboxEvent, utcnow

log = logging.getLogger(__name__)

ADVISORY_LOCK_KEY = 0x4865_7261_6C64  # "Herald"


class EventSink(Protocol):
    """Where the relay publishes; raises a HeraldPublishError subclass when it cannot."""

    async def publish(self, channel: str, data: Any, *, event_id: str = "") -> object: ...


class PackedBus(Protocol):
    """The socket fleet's bus interface (herald_contract.bus.Bus.publish), structurally."""

    async def publish(self, channel: str, packed_data: bytes, *, event_id: str = "") -> object: ...


class PackedBusSink:
    """An :class:`EventSink` over a bus that takes msgpack-packed data (the in-process bus)."""

    def __init__(self, bus: PackedBus) -> None:
        self._bus = bus

    async def publish(self, channel: str, data: Any, *, event_id: str = "") -> object:
        return await self._bus.publish(channel, pack_data(data), event_id=event_id)


class RelayState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


STOP_GRACE_S = 5.0
"""How long :meth:`OutboxRelay.stop` lets the batch in flight finish before cancelling it."""


class OutboxRelay:
    """Drains the outbox to *sink*; :meth:`start` once, :meth:`nudge` after each commit."""

    def __init__(
        self,
        db: Database,
        sink: EventSink,
        *,
        poll_interval_s: float = 0.5,
        retry_max_s: float = 5.0,
        batch_size: int = 100,
        metrics: QAMetrics | None = None,
        retention_s: float = 86400.0,
        prune_interval_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        namespaces: Namespaces | None = None,
    ) -> None:
        """*namespaces*: the installation's (None: the shipped file's), whose kinds are the
        values of the ``namespace`` label of what is published, each exported from the start."""
        self._db = db
        self._metrics = metrics if metrics is not None else build_metrics()
        kinds = (namespaces if namespaces is not None else default_namespaces()).kinds
        self._published_in = {k: self._metrics.namespace_published.labels(k) for k in kinds}
        self._sink = sink
        self._poll_interval_s = poll_interval_s
        self._retry_max_s = retry_max_s
        self._batch_size = batch_size
        self._retention_s = retention_s
        self._prune_interval_s = prune_interval_s
        self._clock = clock
        self._pruned_at: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._state = RelayState.NEW
        self.published = 0
        self.failures = 0
        self.dropped = 0

    @property
    def state(self) -> RelayState:
        return self._state

    def _running(self) -> bool:
        return self._state is RelayState.RUNNING

    def start(self) -> None:
        if self._state is not RelayState.NEW:
            raise RuntimeError(f"cannot start a relay that is {self._state.value}")
        self._state = RelayState.RUNNING
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    def nudge(self) -> None:
        """Something was committed: drain now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop draining (after the batch in flight, if any, for at most
        :data:`STOP_GRACE_S`; then the task is cancelled); idempotent.

        Cancelled at once, a query in flight on SQLite went on in aiosqlite's thread, which
        then handed its result to an event loop already closed (an error in that thread)."""
        self._state = RelayState.STOPPED
        self._wake.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(STOP_GRACE_S):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        except asyncio.CancelledError:
            if not self._task.cancelled():
                raise
        self._task = None

    async def _run(self) -> None:
        # The state is checked as well as the cancellation: a driver may turn a cancellation
        # inside a query into its own error, which the retry below would otherwise outlive.
        delay_s = self._poll_interval_s
        while self._running():
            self._wake.clear()
            try:
                count = await self.drain_once()
            except HeraldPublishError as exc:
                self.failures += 1
                self._metrics.outbox_publish_failures.inc()
                log.warning("outbox relay: bus unavailable (%s); retrying in %.2fs", exc, delay_s)
            except Exception:
                # A database hiccup: logged once per attempt, retried like a bus failure.
                self.failures += 1
                self._metrics.outbox_publish_failures.inc()
                if not self._running():
                    return
                log.exception("outbox relay: drain failed; retrying in %.2fs", delay_s)
            else:
                delay_s = self._poll_interval_s
                if count < self._batch_size:
                    await self._prune_when_due()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
                continue
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self._retry_max_s)

    async def drain_once(self) -> int:
        """Publish up to one batch of pending rows in order; return how many went out.

        Raises the sink's error when the bus refuses; rows published before it are marked.
        """
        done: list[int] = []
        failure: HeraldPublishError | None = None
        if self._db.dialect == "postgresql":
            async with self._db.writes() as session, session.begin():
                lock = func.pg_try_advisory_xact_lock(ADVISORY_LOCK_KEY)
                if not await session.scalar(select(lock)):
                    return 0
                failure = await self._publish(await self._pending(session), done)
                await self._mark(session, done)
        else:
            async with self._db.reads() as session:
                rows = await self._pending(session)
            failure = await self._publish(rows, done)
            if done:
                async with self._db.write() as session:
                    await self._mark(session, done)
        if failure is not None:
            raise failure
        return len(done)

    async def _prune_when_due(self) -> None:
        now = self._clock()
        if self._pruned_at is not None and now - self._pruned_at < self._prune_interval_s:
            return
        self._pruned_at = now
        try:
            removed = await self.prune()
        except Exception:
            log.exception("outbox relay: pruning failed (retried at the next interval)")
            return
        if removed:
            log.info("outbox relay: removed %d published rows", removed)

    async def prune(self) -> int:
        """Delete rows published more than ``retention_s`` ago; return how many."""
        cutoff = utcnow() - dt.timedelta(seconds=self._retention_s)
        async with self._db.write() as session:
            result = await session.execute(
                delete(OutboxEvent).where(
                    OutboxEvent.published_at.is_not(None), OutboxEvent.published_at < cutoff
                )
            )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def _pending(self, session: AsyncSession) -> Sequence[OutboxEvent]:
        query = (
            select(OutboxEvent)
            .where(OutboxEvent.published_at.is_(None))
            .order_by(OutboxEvent.id)
            .limit(self._batch_size)
        )
        rows = (await session.scalars(query)).all()
        lag_s = (utcnow() - rows[0].created_at).total_seconds() if rows else 0.0
        self._metrics.outbox_lag.set(max(0.0, lag_s))
        return rows

    async def _publish(
        self, rows: Sequence[OutboxEvent], done: list[int]
    ) -> HeraldPublishError | None:
        """Publish *rows* in order, appending each published id to *done*; stop at a failure."""
        for row in rows:
            started = time.monotonic()
            try:
                await self._sink.publish(row.channel, row.payload, event_id=row.event_id)
            except (InvalidChannel, InvalidPayload) as exc:
                # emit() checks both before commit, so only a row written by hand gets here;
                # it can never be published, and keeping it would block every later row.
                self.dropped += 1
                self._metrics.outbox_dropped.inc()
                log.error("outbox relay: dropping row %d (%s): %s", row.id, row.channel, exc)
            except HeraldPublishError as exc:
                return exc
            else:
                self.published += 1
                self._metrics.outbox_published.inc()
                by_kind = self._published_in.get(row.channel.partition(":")[0])
                if by_kind is not None:  # always: the sink took the name, parsed by this file
                    by_kind.inc()
                if isinstance(row.payload, dict) and row.payload.get("reload") is True:
                    self._metrics.events_degraded.inc()  # too big for the bus: sent without body
            done.append(row.id)
            log.debug(
                "published %s %s in %.1f ms",
                row.event_id,
                row.channel,
                (time.monotonic() - started) * 1000,
            )
        return None

    @staticmethod
    async def _mark(session: AsyncSession, ids: list[int]) -> None:
        if ids:
            await session.execute(
                update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(published_at=utcnow())
            )
