"""Even load across a host's workers: a worker holding clearly more than its share sheds some.

SO_REUSEPORT spreads *new* connections over the workers listening at that moment, and nothing
ever moves an open one: after a worker is killed its clients reconnect to the survivors, and
the replacement starts empty and stays so (issue 12, item 4: the survivor kept all 5,000
clients, the replacement none). So each worker publishes its connection count in a slot of a
small array the supervisor shares with every worker it starts (socketsrv/fleet.py: shared
memory, no Redis needed), and every ``rebalance_interval_s`` a worker compares its count with
the fair share (the live workers' total over their number). Past ``rebalance_tolerance``
times that share it closes a bounded, random set of its connections with 4007 (rebalance),
whose reason carries the ``retry_ms`` hint: they come back spread over
``reconnect_spread_s`` and the kernel hands them to any worker, the emptier ones included.

Per interval a worker closes at most ``rebalance_share`` of its connections, and never more
than its excess over the fair share; about half of those come back to it with two workers,
so the excess halves and more per interval. A slot of -1 is a worker that is not running
(set by the supervisor before a start and after a death); it counts in neither the total nor
the number of workers.

    slots = new_slots(ctx, workers)              # the supervisor, before starting workers
    share = LoadShare(slots, index, ...)         # in worker index
    share.tick(now, connections)                 # every sweep: publish, and maybe shed
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Collection, MutableSequence
from typing import Any, Protocol

from socketsrv.protocol.codes import CloseCode

log = logging.getLogger(__name__)

NOT_RUNNING = -1
MIN_EXCESS = 10
"""Connections over the fair share below which a worker never sheds (a handful of clients
unevenly spread is not worth a reconnect)."""


class Sheddable(Protocol):
    @property
    def state(self) -> Any: ...

    def close_with(self, code: CloseCode) -> None: ...


def new_slots(ctx: Any, workers: int) -> MutableSequence[int]:
    """A shared array of *workers* connection counts, every slot NOT_RUNNING.

    *ctx* is a multiprocessing context; the array is passed to each worker process as an
    argument at its start (that is how ``spawn`` shares it)."""
    slots: MutableSequence[int] = ctx.RawArray("q", workers)
    for i in range(workers):
        slots[i] = NOT_RUNNING
    return slots


def to_shed(counts: Collection[int], mine: int, *, tolerance: float, share: float) -> int:
    """How many of its *mine* connections a worker sheds now, given every slot's count.

    0 unless it holds more than *tolerance* times the fair share and at least MIN_EXCESS
    over it; then ``min(ceil(share * mine), mine - fair)``.
    """
    live = [c for c in counts if c >= 0]
    if len(live) < 2 or mine <= 0:
        return 0
    fair = math.ceil(sum(live) / len(live))
    excess = mine - fair
    if mine <= tolerance * fair or excess < MIN_EXCESS:
        return 0
    return min(math.ceil(share * mine), excess)


class LoadShare:
    """One worker's side: its slot, and the shedding decision once per interval."""

    def __init__(
        self,
        slots: MutableSequence[int],
        index: int,
        *,
        interval_s: float,
        tolerance: float,
        share: float,
        on_shed: Callable[[int], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._slots = slots
        self._index = index
        self._interval_s = interval_s
        self._tolerance = tolerance
        self._share = share
        self._on_shed = on_shed
        self._rng = rng or random.Random()
        self._next_at: float | None = None

    def tick(self, now: float, connections: Collection[Sheddable], open_state: Any) -> int:
        """Publish this worker's count; once per interval, shed what :func:`to_shed` says
        (connections in *open_state* only, chosen at random). Returns how many were closed."""
        mine = len(connections)
        self._slots[self._index] = mine
        if self._interval_s <= 0:
            return 0
        if self._next_at is None:
            self._next_at = now + self._interval_s  # let a fresh worker's peers publish first
            return 0
        if now < self._next_at:
            return 0
        self._next_at = now + self._interval_s
        counts = list(self._slots)
        n = to_shed(counts, mine, tolerance=self._tolerance, share=self._share)
        if n == 0:
            return 0
        candidates = [c for c in connections if c.state is open_state]
        victims = self._rng.sample(candidates, min(n, len(candidates)))
        log.info(
            "holding %d connections of %s across the workers: shedding %d (4007)",
            mine,
            [c for c in counts if c >= 0],
            len(victims),
        )
        for conn in victims:
            conn.close_with(CloseCode.REBALANCE)
        if self._on_shed is not None:
            self._on_shed(len(victims))
        return len(victims)

    def leave(self) -> None:
        """This worker stops (a drain): its peers stop counting it."""
        self._slots[self._index] = NOT_RUNNING
