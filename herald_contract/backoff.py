"""The reconnect policy of a bus: exponential backoff with full jitter, and the retry loop.

Full jitter, as in the AWS Architecture Blog's "Exponential Backoff And Jitter" (2015): the
pause before attempt *n* is drawn from ``uniform(0, min(cap, base * 2**n))``. Drawing from
zero, not from *base*, is what spreads a fleet that lost Redis at one instant over the whole
window, so it does not come back at one instant either; the window still doubles, so a long
outage costs few attempts. No floor is kept: an attempt after a pause near zero is one
failed connect, and the next window is twice as wide. The browser client backs off the same
way (docs/protocol.md, "Reconnecting").
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_MAX_DOUBLINGS = 32
"""Past this many doublings every window is the cap anyway; the bound keeps 2**n finite."""


def full_jitter_delay_s(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """The pause before reconnect *attempt* (0-based): ``uniform(0, min(cap, base * 2**n))``."""
    if attempt < 0:
        raise ValueError(f"attempt must be at least 0, not {attempt}")
    window_s = min(cap_s, base_s * 2.0 ** min(attempt, _MAX_DOUBLINGS))
    return rng.uniform(0.0, window_s)


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a bus waits between reconnect attempts (see the module docstring).

    *rng* draws the jitter: pass a seeded one to make the pauses reproducible in a test.
    """

    base_s: float = 0.05
    cap_s: float = 2.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError(f"need 0 < base_s <= cap_s, not {self.base_s} and {self.cap_s}")

    def delay_s(self, attempt: int) -> float:
        """The pause before *attempt* (0-based)."""
        return full_jitter_delay_s(attempt, self.base_s, self.cap_s, self.rng)


async def retry_until_done(
    attempt: Callable[[], Awaitable[_T]],
    backoff: Backoff,
    *,
    retry_on: tuple[type[BaseException], ...],
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[_T, int]:
    """Pause, call *attempt*, and again after each failure in *retry_on*, until it succeeds.

    Returns its result and the number of attempts made. Errors outside *retry_on* (and
    cancellation) end the loop and propagate. Each failure is logged at INFO with *what*.
    """
    count = 0
    while True:
        await sleep(backoff.delay_s(count))
        count += 1
        try:
            return await attempt(), count
        except retry_on as exc:
            logger.info("%s attempt %d failed: %s", what, count, exc)
