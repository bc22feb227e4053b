"""The Q&A traffic model: who subscribes to what, and what gets published how often.

A population of N connections (open tabs):

* every tab shows one question page: ``question:<id>`` drawn from Q = max(10, N / 20)
  questions with Zipf popularity (exponent :data:`ZIPF_S`: a few hot questions hold most tabs);
* :data:`NEW_SHARE` of the tabs also show the question list: ``questions:new``;
* :data:`LOGGED_IN_SHARE` are logged in: ``user:<id>`` (their inbox badge), one user per tab,
  with a connection token (the server allows ``user:`` channels only to that user).

Publications at the nominal rate (:class:`Rates`, per second, for 100,000 tabs; they scale
with N): question events (votes, answers, comments) on a question drawn with the same Zipf
popularity, so hot questions get most of the events; user events (inbox, reputation) to one
logged-in user drawn uniformly; ``questions:new`` at a fixed rate. Every draw uses one seeded
generator, so a run is reproducible.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

ZIPF_S = 1.0
NEW_SHARE = 0.10
LOGGED_IN_SHARE = 0.5
REFERENCE_TABS = 100_000


@dataclass(frozen=True, slots=True)
class Rates:
    """Publications per second for :data:`REFERENCE_TABS` tabs (scaled linearly with N,
    except ``questions_new``, which is site-wide)."""

    question_per_s: float = 20.0
    user_per_s: float = 200.0
    questions_new_per_s: float = 1.0

    def scaled(self, tabs: int, multiplier: float = 1.0) -> Rates:
        k = tabs / REFERENCE_TABS * multiplier
        return Rates(self.question_per_s * k, self.user_per_s * k, self.questions_new_per_s)

    @property
    def total_per_s(self) -> float:
        return self.question_per_s + self.user_per_s + self.questions_new_per_s


NOMINAL = Rates()


class Population:
    """The channels of each of *tabs* connections (see the module docstring)."""

    def __init__(self, tabs: int, *, seed: int = 3) -> None:
        self.tabs = tabs
        self.rng = random.Random(seed)
        self.questions = max(10, tabs // 20)
        weights = [1.0 / math.pow(rank, ZIPF_S) for rank in range(1, self.questions + 1)]
        self._cumulative = list(accumulate(weights))
        self.assignments: list[list[str]] = []
        self.users: list[str] = []
        self.subscribers: dict[str, int] = {}
        for tab in range(tabs):
            channels = [f"question:{self.draw_question()}"]
            if self.rng.random() < NEW_SHARE:
                channels.append("questions:new")
            if self.rng.random() < LOGGED_IN_SHARE:
                user = f"user:{tab + 1}"
                channels.append(user)
                self.users.append(user)
            for channel in channels:
                self.subscribers[channel] = self.subscribers.get(channel, 0) + 1
            self.assignments.append(channels)

    def draw_question(self) -> int:
        x = self.rng.random() * self._cumulative[-1]
        return bisect_left(self._cumulative, x) + 1

    def draw_event(self, rates: Rates) -> str:
        """The channel of the next publication, drawn in proportion to the rates."""
        x = self.rng.random() * rates.total_per_s
        if x < rates.questions_new_per_s:
            return "questions:new"
        if x < rates.questions_new_per_s + rates.question_per_s or not self.users:
            return f"question:{self.draw_question()}"
        return self.users[self.rng.randrange(len(self.users))]

    def expected_deliveries_per_s(self, rates: Rates) -> float:
        """Mean frames per second the fleet must write at *rates*."""
        total = self._cumulative[-1]
        fanout_q = sum(
            (1.0 / math.pow(rank, ZIPF_S) / total) * self.subscribers.get(f"question:{rank}", 0)
            for rank in range(1, self.questions + 1)
        )
        return (
            rates.question_per_s * fanout_q
            + rates.user_per_s * (1.0 if self.users else 0.0)
            + rates.questions_new_per_s * self.subscribers.get("questions:new", 0)
        )
