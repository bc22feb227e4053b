"""Starting a worker's bus in the background, retried with full-jitter backoff until it is live.

A worker listens before its bus is live: ``/readyz`` answers 503 and subscribes get the error
503 ("unavailable": retry) until then. So an unreachable Redis leaves the worker up and
unready, where it used to fail the worker's start and make the supervisor restart it over and
over with a traceback each time. Each failed attempt is one log line without a traceback.

The pause before attempt *n* (0-based) is drawn from ``uniform(0, min(cap, base * 2**n))``
("full jitter", AWS Architecture Blog, "Exponential Backoff And Jitter", 2015): workers that
met a down Redis at the same instant do not knock on it again in step.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from herald_contract.bus import Bus, BusListener, BusUnavailable

log = logging.getLogger(__name__)

_MAX_DOUBLINGS = 32
"""Past this many doublings every window is the cap; the bound keeps 2**n finite."""


@dataclass(frozen=True, slots=True)
class StartBackoff:
    """The pauses between attempts to start the bus; a seeded *rng* makes them reproducible."""

    base_s: float = 0.1
    cap_s: float = 5.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, not {self.base_s} and {self.cap_s}")

    def delay_s(self, attempt: int) -> float:
        """The pause after failed attempt *attempt* (0-based): full jitter (module docstring)."""
        window_s = min(self.cap_s, self.base_s * 2.0 ** min(attempt, _MAX_DOUBLINGS))
        return self.rng.uniform(0.0, window_s)


async def start_until_live(
    bus: Bus,
    listener: BusListener,
    backoff: StartBackoff,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> int:
    """Call ``bus.start(listener)`` until it succeeds; the number of attempts it took.

    Only :class:`BusUnavailable` is retried; any other error (a bug, a bad setting) ends the
    call. Cancelling it stops the retries.
    """
    attempt = 0
    while True:
        try:
            await bus.start(listener)
        except BusUnavailable as exc:
            pause_s = backoff.delay_s(attempt)
            attempt += 1
            log.warning(
                "bus not reachable (attempt %d): %s; next attempt in %.2f s",
                attempt,
                exc.why,
                pause_s,
            )
            await sleep(pause_s)
        else:
            return attempt + 1
