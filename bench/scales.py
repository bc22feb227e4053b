"""The sizes a run can take: ``smoke`` (a few hundred connections, seconds: the test suite runs
it), ``quick`` (10-20k connections, a few minutes) and ``full`` (100,000 connections over 6
Herald workers and 6 load processes). ``python -m bench.run --set FIELD=JSON`` overrides one
field of the chosen scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Plans = dict[str, list[tuple[int, list[int]]]]
"""target -> [(workers, cumulative connection counts)]."""


@dataclass(frozen=True)
class Scale:
    name: str
    load_processes: int
    idle: Plans
    broadcast: Plans
    idle_window_s: float
    qa_tabs: int
    qa_workers: int
    qa_multipliers: list[float]
    qa_step_s: float
    churn_workers: int
    churn_rates: list[float]
    churn_step_s: float
    storm_tabs: int
    storm_workers: int
    rounds: int = 3
    """Rounds of idle, broadcast and the Q&A mix: each round runs every target once, in the
    run's target order (herald, floor, ..., herald, floor, ...), so that targets compared in a
    ratio run minutes apart at most and every ratio is a median over the rounds with its
    min and max (bench/bars.py). Churn and the storm run once (Herald only)."""
    qa_targets: tuple[str, ...] = ()
    """The targets that run the Q&A mix (among the run's); empty: every target of the run.
    Herald-only parts (tokens for ``user:`` channels, its slow-disconnect metric) are skipped
    for the others and the run says so (``skipped``)."""
    qa_rate_boost: float = 1.0
    """Multiplies the nominal rate (smoke only: a few hundred tabs publish almost nothing
    at the nominal rate, and the smoke test needs publications to count)."""
    qa_probe_every: int = 10
    qa_lower_multipliers: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.1])
    """Tried in order when the nominal rate misses the bar, until one meets it."""
    broadcast_deliveries: int = 1_000_000
    """Deliveries per broadcast point (publications = this / connections, bounded)."""
    broadcast_deliveries_for: dict[str, int] = field(default_factory=dict)
    """Per-target overrides (python-socketio delivers ~30x slower: fewer, same bounds)."""
    broadcast_min_pubs: int = 20
    broadcast_max_pubs: int = 500
    broadcast_windows: tuple[int, ...] = (8, 1)
    """Publications allowed ahead of the clients; the first is the scenario's load (and the
    bars'), 1 is lockstep (no two publications ever ready together)."""
    broadcast_timeout_s: float = 300.0
    burst_size: int = 10
    churn_concurrency: int = 200
    storm_rate_multiplier: float = 1.0
    storm_concurrency: int = 3000
    storm_before_s: float = 3.0
    storm_after_s: float = 3.0
    storm_timeout_s: float = 180.0
    open_timeout_s: float = 240.0
    open_concurrency: int = 600
    settle_s: float = 2.0
    notes: list[str] = field(default_factory=list)


ONE = [(1, [100, 200])]
SCALES = {
    "smoke": Scale(
        name="smoke", load_processes=2,
        idle={"herald": ONE, "floor": ONE, "socketio": ONE},
        broadcast={"herald": [(1, [200])], "floor": [(1, [200])], "socketio": [(1, [200])]},
        idle_window_s=1.0, qa_tabs=300, qa_workers=2, qa_multipliers=[1.0], qa_step_s=2.0,
        qa_rate_boost=200.0, qa_probe_every=5, qa_lower_multipliers=[],
        churn_workers=1, churn_rates=[40.0], churn_step_s=2.0,
        storm_tabs=300, storm_workers=2, storm_rate_multiplier=100.0,
        storm_before_s=1.0, storm_after_s=1.0, storm_timeout_s=120.0, open_timeout_s=30.0,
        broadcast_deliveries=4000, broadcast_min_pubs=10, settle_s=0.3, burst_size=5,
        rounds=1, qa_targets=("herald", "floor"),
    ),
    "quick": Scale(
        name="quick", load_processes=2,
        idle={
            "herald": [(1, [2000, 10000, 19000])],
            "floor": [(1, [2000, 10000, 19000])],
            "socketio": [(1, [2000, 10000, 19000])],
            "socketio-node": [(1, [2000, 10000, 19000])],
        },
        broadcast={
            "herald": [(1, [2000, 10000, 19000])],
            "floor": [(1, [2000, 10000, 19000])],
            "socketio": [(1, [2000, 10000, 19000])],
            "socketio-node": [(1, [2000, 10000, 19000])],
        },
        idle_window_s=27.0, qa_tabs=19000, qa_workers=2,
        qa_multipliers=[1.0, 2.0, 4.0, 8.0, 16.0], qa_step_s=26.0,
        churn_workers=1, churn_rates=[500.0, 1000.0, 2000.0, 4000.0], churn_step_s=10.0,
        storm_tabs=19000, storm_workers=2, broadcast_deliveries=600_000,
        broadcast_deliveries_for={"socketio": 150_000},
    ),
    "full": Scale(
        name="full", load_processes=6,
        idle={
            "herald": [(1, [5000, 10000, 19000]), (6, [50000, 100000])],
            "floor": [(1, [5000, 10000, 19000]), (6, [100000])],
            "socketio": [(1, [5000, 10000, 19000])],
            "socketio-node": [(1, [5000, 10000, 19000])],
        },
        broadcast={
            "herald": [(1, [2000, 10000, 19000]), (6, [100000])],
            "floor": [(1, [2000, 10000, 19000]), (6, [100000])],
            "socketio": [(1, [2000, 10000, 19000])],
            "socketio-node": [(1, [2000, 10000, 19000])],
        },
        idle_window_s=27.0, qa_tabs=100_000, qa_workers=6,
        qa_multipliers=[1.0, 2.0, 4.0, 8.0], qa_step_s=26.0,
        churn_workers=2, churn_rates=[1000.0, 2000.0, 4000.0], churn_step_s=15.0,
        storm_tabs=100_000, storm_workers=6, broadcast_deliveries=1_000_000,
        storm_rate_multiplier=0.2,
        broadcast_deliveries_for={"socketio": 200_000},
        open_timeout_s=400.0, storm_timeout_s=240.0,
        # python-socketio is measured up to 19,000 connections on one worker only.
        qa_targets=("herald", "floor", "socketio-node"),
    ),
}  # fmt: skip
