"""herald_contract/backoff.py: full-jitter delays drawn from a seeded generator, the retry loop."""

from __future__ import annotations

import random

import pytest

from herald_contract.backoff import Backoff, full_jitter_delay_s, retry_until_done

BASE_S, CAP_S = 0.05, 2.0


def window_s(attempt: int) -> float:
    return min(CAP_S, BASE_S * 2**attempt)


def test_each_delay_lies_between_zero_and_the_doubled_window_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt in range(40):
        for _ in range(50):
            assert 0.0 <= full_jitter_delay_s(attempt, BASE_S, CAP_S, rng) <= window_s(attempt)


def test_delays_spread_over_the_whole_window_from_zero() -> None:
    # Full jitter draws from [0, window], not from [base, window]: a fleet that lost Redis at
    # one instant spreads its reconnects over the whole window, the first ones included.
    rng = random.Random(11)
    for attempt in (0, 3, 10):
        delays = [full_jitter_delay_s(attempt, BASE_S, CAP_S, rng) for _ in range(400)]
        assert min(delays) < 0.05 * window_s(attempt)
        assert max(delays) > 0.95 * window_s(attempt)


def test_the_same_seed_gives_the_same_delays() -> None:
    one = Backoff(BASE_S, CAP_S, random.Random(3))
    two = Backoff(BASE_S, CAP_S, random.Random(3))
    assert [one.delay_s(n) for n in range(10)] == [two.delay_s(n) for n in range(10)]


def test_a_huge_attempt_number_stays_under_the_cap() -> None:
    assert full_jitter_delay_s(10_000, BASE_S, CAP_S, random.Random(1)) <= CAP_S


@pytest.mark.parametrize(("base_s", "cap_s"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_a_backoff_needs_a_positive_base_no_larger_than_the_cap(
    base_s: float, cap_s: float
) -> None:
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s, cap_s)


def test_a_negative_attempt_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt"):
        full_jitter_delay_s(-1, BASE_S, CAP_S, random.Random(1))


async def test_the_retry_loop_pauses_before_each_attempt_until_one_succeeds() -> None:
    backoff = Backoff(BASE_S, CAP_S, random.Random(5))
    expected = Backoff(BASE_S, CAP_S, random.Random(5))
    pauses: list[float] = []
    failures = [OSError("refused"), TimeoutError("silent")]

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "connected"

    result = await retry_until_done(
        attempt, backoff, retry_on=(OSError, TimeoutError), what="test", sleep=sleep
    )
    assert result == ("connected", 3)
    assert pauses == [expected.delay_s(n) for n in range(3)]


async def test_the_retry_loop_lets_other_errors_through() -> None:
    async def sleep(seconds: float) -> None:
        return None

    async def attempt() -> None:
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        await retry_until_done(attempt, Backoff(), retry_on=(OSError,), what="test", sleep=sleep)
