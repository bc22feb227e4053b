"""The five scenarios, one a module, each a bounded coroutine over a Bench.

    idle.py       memory per connection and the CPU of holding idle connections (every target)
    broadcast.py  one channel, N subscribers: deliveries per server CPU-second (every target)
    qa_mix.py     the Q&A population at the nominal rate and multiples of it (Herald)
    churn.py      connect + subscribe + close at increasing rates (Herald)
    storm.py      the whole fleet killed and restarted: every client recovers (Herald)
    harness.py    what they share: Bench, a running Server, waits, measurements
    publishing.py publication data and the rate publisher
    summary.py    latency percentiles and the connection trouble summary

Every scenario starts its own server(s) through bench/targets.py, drives the load processes
(bench/loadgen/), measures the server's process tree before and after (bench/measure.py) and
returns JSON-ready runs (TypedDicts). Nothing here asserts a timing: the numbers go to the
report; only counts are checked (and reported).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench.scenarios import broadcast, churn, idle, qa_mix, storm
from bench.scenarios.harness import Bench

Scenario = Callable[[Bench], Awaitable[Sequence[Any]]]
"""A scenario: its runs, in the results JSON under the scenario's name."""

SCENARIOS: dict[str, Scenario] = {
    "idle": idle.run,
    "broadcast": broadcast.run,
    "qa_mix": qa_mix.run,
    "churn": churn.run,
    "storm": storm.run,
}
"""In the order a run takes them."""
