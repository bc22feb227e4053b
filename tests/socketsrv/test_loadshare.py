"""socketsrv/loadshare.py: a worker holding clearly more than its share sheds a bounded part.

The decision and the shedding with fake connections and a plain list for the shared slots;
then a real fleet of two workers on a real redis-server where one is killed and its
replacement, empty at first, ends up with a fair part of the clients (issue 12, item 4).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from socketsrv.loadshare import MIN_EXCESS, NOT_RUNNING, LoadShare, to_shed
from socketsrv.protocol.codes import CloseCode, retry_hint_s
from tests.support.fleet import Fleet
from tests.support.redis_server import RedisServer

OPEN, CLOSING = "open", "closing"


class FakeConnection:
    def __init__(self) -> None:
        self.state = OPEN
        self.closed_with: CloseCode | None = None

    def close_with(self, code: CloseCode) -> None:
        self.closed_with = code
        self.state = CLOSING


def shed(conns: list[FakeConnection]) -> list[FakeConnection]:
    return [c for c in conns if c.closed_with is CloseCode.REBALANCE]


# The decision


def test_a_worker_far_over_its_share_sheds_the_share_per_interval() -> None:
    assert to_shed([5000, 0], 5000, tolerance=1.25, share=0.1) == 500


def test_a_worker_never_sheds_more_than_its_excess() -> None:
    assert to_shed([200, 100], 200, tolerance=1.25, share=0.5) == 200 - 150


@pytest.mark.parametrize(
    ("counts", "mine"),
    [
        ([120, 100], 120),  # within the tolerance (fair 110, 1.25 x 110 = 137.5)
        ([100, 100], 100),  # even
        ([10, 0], 10),  # over the tolerance but fewer than MIN_EXCESS over the fair share
        ([0, 500], 0),  # the empty one
        ([5000], 5000),  # alone
        ([5000, NOT_RUNNING], 5000),  # the other is dead or not started yet: alone
    ],
    ids=["within-tolerance", "even", "small-excess", "empty", "alone", "peer-not-running"],
)
def test_a_worker_within_its_share_or_alone_sheds_nothing(counts: list[int], mine: int) -> None:
    assert to_shed(counts, mine, tolerance=1.25, share=0.1) == 0


def test_the_excess_floor_is_ten_connections() -> None:
    assert MIN_EXCESS == 10
    assert to_shed([30, 10], 30, tolerance=1.25, share=1.0) == 10


# One worker's side


def test_a_worker_publishes_its_count_every_tick_and_sheds_once_per_interval() -> None:
    slots = [NOT_RUNNING, 0]
    conns = [FakeConnection() for _ in range(200)]
    counted: list[int] = []
    share = LoadShare(
        slots, 0, interval_s=5.0, tolerance=1.25, share=0.1, on_shed=counted.append,
        rng=random.Random(1),
    )  # fmt: skip
    assert share.tick(0.0, conns, OPEN) == 0  # the first interval lets the peers publish
    assert slots[0] == 200
    assert share.tick(4.9, conns, OPEN) == 0
    assert share.tick(5.0, conns, OPEN) == 20
    assert len(shed(conns)) == 20
    assert counted == [20]
    assert share.tick(6.0, conns, OPEN) == 0  # not before the next interval
    assert share.tick(10.0, conns, OPEN) == 20
    assert len(shed(conns)) == 40  # others than the ones closing already


def test_a_draining_worker_leaves_the_count_and_an_interval_of_zero_never_sheds() -> None:
    slots = [0, 0]
    conns = [FakeConnection() for _ in range(100)]
    share = LoadShare(slots, 1, interval_s=0.0, tolerance=1.25, share=1.0)
    for now in (0.0, 10.0, 20.0):
        assert share.tick(now, conns, OPEN) == 0
    assert slots == [0, 100]
    share.leave()
    assert slots == [0, NOT_RUNNING]


# A real fleet (issue 12, item 4: the survivor kept all 5,000 clients, the replacement none)

CLIENTS = 200


@pytest.fixture
def fleet(redis_server: RedisServer, tmp_path: Path) -> Iterator[Fleet]:
    running = Fleet(
        redis_url=redis_server.url,
        workers=2,
        log=tmp_path / "fleet.log",
        HERALD_SWEEP_INTERVAL_S="0.2",
        HERALD_REBALANCE_INTERVAL_S="0.5",
        HERALD_RECONNECT_SPREAD_S="0.5",
        HERALD_DRAIN_TIMEOUT_S="5",
    )
    running.wait_ready()
    yield running
    running.close()


def worker_counts(fleet: Fleet) -> dict[int, int]:
    """Each running worker's open connections, by pid (herald_worker_connections)."""
    status, text = fleet.http_get("/metrics", timeout_s=10)
    assert status == 200
    pattern = rb'^herald_worker_connections\{pid="(\d+)"\} (\S+)$'
    return {int(pid): int(float(v)) for pid, v in re.findall(pattern, text, re.M)}


async def until(
    fleet: Fleet, condition: Callable[[dict[int, int]], bool], what: str, timeout_s: float
) -> None:
    """Poll the fleet's per-worker counts (off the loop, which the clients need) until
    *condition* holds for them; fail after *timeout_s*."""
    deadline = time.monotonic() + timeout_s
    counts: dict[int, int] = {}
    while time.monotonic() < deadline:
        counts = await asyncio.to_thread(worker_counts_or_none, fleet, counts)
        if condition(counts):
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"{what}: not within {timeout_s} s (last counts {counts})")


def worker_counts_or_none(fleet: Fleet, last: dict[int, int]) -> dict[int, int]:
    try:
        return worker_counts(fleet)
    except OSError:  # a worker killed in the middle of a scrape
        return last


async def stay_connected(url: str, stop: asyncio.Event) -> None:
    """One client that reconnects after every close, honouring the retry_ms hint."""
    rng = random.Random()
    while not stop.is_set():
        reason = ""
        try:
            async with connect(
                url, subprotocols=[Subprotocol("herald.v1.json")], ping_interval=None,
                open_timeout=30, close_timeout=2,
            ) as ws:  # fmt: skip
                await ws.send(json.dumps({"op": "connect", "id": 1}))
                async for raw in ws:
                    if json.loads(raw).get("type") == "hb":
                        await ws.send(json.dumps({"op": "pong"}))
                    if stop.is_set():
                        return
        except ConnectionClosed as exc:
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
        except (OSError, InvalidHandshake, TimeoutError):
            pass
        await asyncio.sleep(retry_hint_s(reason) + rng.uniform(0, 0.2))


@pytest.mark.timeout(180)
async def test_after_a_worker_is_killed_its_replacement_gets_a_fair_part_of_the_clients(
    fleet: Fleet,
) -> None:
    stop = asyncio.Event()
    clients = [asyncio.ensure_future(stay_connected(fleet.url, stop)) for _ in range(CLIENTS)]
    try:
        await until(fleet, lambda c: sum(c.values()) == CLIENTS, "all connected", 60)
        victim = max(worker_counts(fleet).items(), key=lambda item: item[1])[0]
        os.kill(victim, signal.SIGKILL)
        await until(
            fleet,
            lambda c: victim not in c and max(c.values(), default=0) == CLIENTS,
            "the survivor holds every client",
            60,
        )
        await until(
            fleet,
            lambda c: len(c) == 2 and sum(c.values()) == CLIENTS and min(c.values()) >= 60,
            "the load evened out",
            90,
        )
    finally:
        stop.set()
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    assert "shedding" in fleet.log()
