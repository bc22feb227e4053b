"""The storm's recovery CPU is split by what a client costs once it is back."""

from __future__ import annotations

from bench.scenarios.storm import split_recovery_cpu


def test_the_clients_already_back_are_charged_the_area_of_the_ready_curve() -> None:
    # 0 -> 100 clients over 10 s, then 100 for 10 s: 500 + 1,000 client-seconds.
    curve = [[0.0, 0.0], [10.0, 100.0], [20.0, 100.0]]
    split = split_recovery_cpu(curve, cpu_s=2.0, reconnected=100, per_client_s=0.001)
    assert split == {
        "connected_client_s": 1500.0,
        "connected_cpu_s": 1.5,
        "reconnecting_cpu_s": 0.5,
        "reconnecting_ms_per_client": 5.0,
    }


def test_the_clients_already_back_are_never_charged_more_than_the_recovery_used() -> None:
    split = split_recovery_cpu([[0.0, 0.0], [1.0, 10.0]], cpu_s=1.0, reconnected=10,
                               per_client_s=10.0)  # fmt: skip
    assert split["connected_cpu_s"] == 1.0
    assert split["reconnecting_cpu_s"] == 0.0


def test_a_curve_of_one_point_has_no_area() -> None:
    split = split_recovery_cpu([[0.0, 5.0]], cpu_s=1.0, reconnected=5, per_client_s=0.01)
    assert split["connected_client_s"] == 0.0
    assert split["reconnecting_ms_per_client"] == 200.0
