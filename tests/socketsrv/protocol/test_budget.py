"""socketsrv/protocol/budget.py: token buckets, and the per-address budgets of a worker."""

from __future__ import annotations

from socketsrv.protocol.budget import AddressBudgets, AddressLimits, TokenBucket

T0 = 1_800_000_000.0


def test_a_bucket_starts_full_and_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=4, now=T0)
    assert bucket.take(4, T0)
    assert not bucket.take(1, T0)
    assert bucket.level(T0 + 1.0) == 2.0
    assert bucket.level(T0 + 100.0) == 4.0


def test_taking_more_than_there_is_takes_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=3, now=T0)
    assert not bucket.take(5, T0)
    assert bucket.level(T0) == 3.0


def test_a_clock_going_backwards_adds_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=3, now=T0)
    assert bucket.take(3, T0)
    assert bucket.level(T0 - 50.0) == 0.0
    assert bucket.level(T0 + 1.0) == 1.0


def test_seconds_until_says_when_tokens_are_back() -> None:
    bucket = TokenBucket(rate=4.0, burst=8, now=T0)
    assert bucket.seconds_until(1, T0) == 0.0
    assert bucket.take(8, T0)
    assert bucket.seconds_until(2, T0) == 0.5


def test_one_address_gets_the_same_budget_back_while_it_spends() -> None:
    budgets = AddressBudgets(AddressLimits())
    budget = budgets.budget("198.51.100.1", T0)
    assert budget.connections.take(1, T0)
    assert budgets.budget("198.51.100.1", T0 + 1.0) is budget
    assert budgets.budget("198.51.100.2", T0) is not budget


def test_at_the_bound_the_refilled_addresses_are_forgotten_first() -> None:
    budgets = AddressBudgets(AddressLimits(max_addresses=4, connections_per_s=1.0))
    spending = budgets.budget("198.51.100.1", T0)
    assert spending.connections.take(50, T0)
    for n in range(2, 5):
        budgets.budget(f"198.51.100.{n}", T0)
    budgets.budget("198.51.100.9", T0 + 1.0)
    # The three untouched addresses went; the one still spending stayed.
    assert len(budgets) == 2
    assert budgets.budget("198.51.100.1", T0 + 1.0) is spending


def test_the_number_of_addresses_remembered_stays_bounded_when_all_spend() -> None:
    budgets = AddressBudgets(AddressLimits(max_addresses=100))
    for n in range(10_000):
        assert budgets.budget(f"2001:db8::{n:x}", T0).connections.take(1, T0)
        assert len(budgets) <= 100
