"""The coordinator's arithmetic: how connections and a churn plan are shared out over the
load processes, and how their stats add up. No processes."""

from __future__ import annotations

from bench.loadgen.churn import ChurnPlan
from bench.loadgen.generator import split_even, sum_stats
from bench.loadgen.results import ProcessStats


def stats(**changes: object) -> ProcessStats:
    base: ProcessStats = {
        "lost_unexpectedly": 0, "adapter_errors": 0, "adapter_error_codes": {},
        "connect_failures": {}, "handshake_failures": {}, "closes": {}, "clients": 10,
        "open": 10, "ready": 10, "cpu_s": 1.5, "publications": 100, "duplicates": 0,
        "gaps": 0, "subscribed": 10, "recovered": 0, "recovery_failed": 0, "latency_pending": 0,
    }  # fmt: skip
    return {**base, **changes}  # type: ignore[typeddict-item]


def test_connections_are_split_in_contiguous_chunks_that_differ_by_at_most_one() -> None:
    chunks = split_even(list(range(11)), 3)
    assert [list(c) for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert [list(c) for c in split_even([1], 3)] == [[1], [], []]


def test_a_churn_plan_is_shared_out_with_at_least_one_of_everything_per_process() -> None:
    plan = ChurnPlan(("question:1",), rate_per_s=100.0, duration_s=2.0, max_count=5,
                     concurrency=3, cycle_timeout_s=4.0)  # fmt: skip
    part = plan.share(4)
    assert part.rate_per_s == 25.0
    assert (part.max_count, part.concurrency) == (1, 1)
    assert (part.duration_s, part.cycle_timeout_s, part.channels) == (2.0, 4.0, ("question:1",))


def test_stats_add_counters_and_merge_counts_by_key() -> None:
    total = sum_stats([
        stats(closes={"1000": 2}, connect_failures={"TimeoutError": 1}),
        stats(closes={"1000": 1, "4001": 1}, publications=50, cpu_s=0.5),
    ])  # fmt: skip
    assert total["closes"] == {"1000": 3, "4001": 1}
    assert total["connect_failures"] == {"TimeoutError": 1}
    assert (total["publications"], total["clients"]) == (150, 20)
    assert total["cpu_s"] == 2.0
    assert total["per_process_cpu_s"] == [1.5, 0.5]
