"""launch/probe_ledger.py: which probe each prober connection owes, on a caller's clock."""

from __future__ import annotations

import pytest

from launch.probe_ledger import Probe, ProbeLedger, parse_probe, probe_data


def ledger_of(*connections: int, deadline_s: float = 10.0) -> ProbeLedger:
    ledger = ProbeLedger(deadline_s)
    for connection in connections:
        ledger.join(connection)
    return ledger


def test_a_probe_received_by_every_connection_gives_each_its_latency_and_no_miss() -> None:
    ledger = ledger_of(0, 1)
    ledger.sent(1, now=100.0)
    assert ledger.received(0, 1, now=100.25) == pytest.approx(0.25)
    assert ledger.received(1, 1, now=100.5) == pytest.approx(0.5)
    assert ledger.outstanding == 0
    assert ledger.expire(now=1000.0) == 0


def test_a_repeat_of_a_received_probe_is_not_timed_twice() -> None:
    ledger = ledger_of(0, 1)
    ledger.sent(1, now=0.0)
    ledger.received(0, 1, now=0.1)
    assert ledger.received(0, 1, now=0.2) is None


def test_a_probe_not_received_within_the_deadline_is_one_miss_per_connection_owing_it() -> None:
    ledger = ledger_of(0, 1, 2, deadline_s=10.0)
    ledger.sent(1, now=0.0)
    ledger.received(1, 1, now=0.1)
    assert ledger.expire(now=9.99) == 0
    assert ledger.expire(now=10.0) == 2
    assert ledger.expire(now=20.0) == 0, "a miss is counted once"
    assert ledger.received(0, 1, now=10.5) is None, "a late receipt is not timed after the miss"


def test_a_connection_owes_only_the_probes_sent_after_it_joined() -> None:
    ledger = ledger_of(0)
    ledger.sent(1, now=0.0)
    ledger.join(1)
    ledger.sent(2, now=1.0)
    assert ledger.received(1, 1, now=1.1) is None
    assert ledger.received(1, 2, now=1.2) == pytest.approx(0.2)
    assert ledger.expire(now=100.0) == 2, "connection 0 missed both"


def test_a_probe_sent_with_no_connection_subscribed_is_owed_by_nobody() -> None:
    ledger = ProbeLedger(1.0)
    ledger.sent(1, now=0.0)
    assert ledger.outstanding == 0
    assert ledger.expire(now=5.0) == 0


def test_a_withdrawn_probe_says_how_many_owed_it_and_is_forgotten() -> None:
    ledger = ledger_of(0, 1)
    ledger.sent(1, now=0.0)
    assert ledger.withdraw(1) == 2
    assert ledger.withdraw(1) == 0
    assert ledger.expire(now=100.0) == 0


def test_a_connection_that_left_owes_nothing_more() -> None:
    ledger = ledger_of(0, 1)
    ledger.sent(1, now=0.0)
    ledger.leave(0)
    ledger.sent(2, now=1.0)
    assert ledger.expire(now=100.0) == 2, "connection 1 missed both, connection 0 none"


def test_probe_data_reads_back_as_the_same_probe() -> None:
    assert parse_probe(probe_data(7, "ab12cd34", 1_700_000_000_000)) == Probe(7, "ab12cd34")


@pytest.mark.parametrize(
    "data",
    [
        None,
        "probe",
        [1, "run"],
        {"probe": 1},
        {"run": "r"},
        {"probe": 0, "run": "r"},
        {"probe": True, "run": "r"},
        {"probe": 1.0, "run": "r"},
        {"probe": "1", "run": "r"},
        {"probe": 1, "run": 7},
    ],
)
def test_data_that_is_not_a_probe_is_ignored(data: object) -> None:
    assert parse_probe(data) is None
