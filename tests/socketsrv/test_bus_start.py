"""socketsrv/bus_start.py, and a worker that comes up before its Redis does.

The retry loop is driven with a fake sleep that records its pauses; the worker test starts a
real redis-server only after the worker is serving.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path

import pytest

from herald_contract.bus import BusListener, BusUnavailable
from socketsrv.bus_start import StartBackoff, start_until_live
from tests.support.client import HeraldTestClient
from tests.support.raw_ws import http_get
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually
from tests.support.worker import publish, running_worker, ws_url


class FlakyBus:
    """Only what start_until_live uses of a bus: start() fails *failures* times."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or BusUnavailable("connection refused")
        self.attempts = 0

    async def start(self, listener: BusListener) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise self.error


class RecordedSleep:
    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.pauses.append(seconds)


def bus_start_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "socketsrv.bus_start"]


def test_each_pause_is_drawn_from_zero_to_a_window_that_doubles_up_to_the_cap() -> None:
    backoff = StartBackoff(base_s=0.1, cap_s=1.0, rng=random.Random(7))
    for attempt, window_s in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]):
        pauses = [backoff.delay_s(attempt) for _ in range(200)]
        assert all(0.0 <= p <= window_s for p in pauses), attempt
        assert min(pauses) < window_s * 0.1  # full jitter: from zero, not from the base
        assert max(pauses) > window_s * 0.9
    assert backoff.delay_s(10_000) <= 1.0


def test_a_backoff_whose_base_exceeds_its_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="need 0 < base_s <= cap_s"):
        StartBackoff(base_s=2.0, cap_s=1.0)


async def test_an_unreachable_bus_is_retried_with_one_log_line_per_failure_and_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus, sleep = FlakyBus(failures=3), RecordedSleep()
    backoff = StartBackoff(base_s=0.1, cap_s=1.0, rng=random.Random(1))
    with caplog.at_level(logging.WARNING, logger="socketsrv.bus_start"):
        attempts = await start_until_live(bus, _NoListener(), backoff, sleep=sleep)  # type: ignore[arg-type]
    assert (attempts, bus.attempts) == (4, 4)
    assert [p <= w for p, w in zip(sleep.pauses, [0.1, 0.2, 0.4], strict=True)] == [True] * 3
    lines = bus_start_warnings(caplog)
    assert [r.getMessage().split(":")[0] for r in lines] == [
        f"bus not reachable (attempt {n})" for n in (1, 2, 3)
    ]
    assert all(r.exc_info is None for r in lines)
    assert "connection refused" in lines[0].getMessage()


async def test_an_error_that_is_not_an_outage_is_not_retried() -> None:
    bus, sleep = FlakyBus(failures=1, error=ValueError("bad url")), RecordedSleep()
    with pytest.raises(ValueError, match="bad url"):
        await start_until_live(bus, _NoListener(), StartBackoff(), sleep=sleep)  # type: ignore[arg-type]
    assert sleep.pauses == []


class _NoListener:
    def on_publication(self, channel: str, envelope: bytes) -> None: ...

    def on_bus_lost(self) -> None: ...

    def on_bus_restored(self) -> None: ...


@pytest.mark.redis
async def test_a_worker_serves_unready_until_its_redis_comes_up_then_is_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redis = RedisServer(tmp_path / "redis")  # its port chosen, the server not started yet
    backoff = StartBackoff(base_s=0.01, cap_s=0.1, rng=random.Random(3))
    caplog.set_level(logging.WARNING, logger="socketsrv.bus_start")
    try:
        async with running_worker(
            redis_url=redis.url, bus_backoff=backoff, wait_for_bus=False
        ) as worker:
            await eventually(lambda: len(bus_start_warnings(caplog)) >= 2)
            assert (await http_get(worker.port, "/readyz")).status == 503
            assert (await http_get(worker.port, "/healthz")).status == 200
            client = HeraldTestClient(ws_url(worker))
            await client.open()
            try:
                refused = await client.subscribe("question:1")
                assert (refused["type"], refused["code"]) == ("error", 503)

                await asyncio.to_thread(redis.start)
                await worker.bus_started()
                assert (await http_get(worker.port, "/readyz")).status == 200
                again = await client.subscribe("question:1")
                assert again["type"] == "reply", again
                await publish(worker, "question:1", {"score": 1})
                await eventually(lambda: client.data("question:1") == [{"score": 1}])
            finally:
                await client.close()
    finally:
        redis.close()
    assert all(r.exc_info is None for r in bus_start_warnings(caplog))
