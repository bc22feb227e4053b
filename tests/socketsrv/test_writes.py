"""socketsrv/writes.py: one write per marked writer per loop turn, bytes counted."""

from __future__ import annotations

import asyncio

import pytest

from socketsrv.metrics import build_metrics
from socketsrv.writes import WriteScheduler
from tests.support.waiting import eventually


class QueueingWriter:
    def __init__(self, scheduler: WriteScheduler) -> None:
        self.scheduler = scheduler
        self.queued: list[bytes] = []
        self.writes: list[bytes] = []

    def push(self, frame: bytes) -> None:
        if not self.queued:
            self.scheduler.mark(self)
        self.queued.append(frame)

    def write_queued(self) -> int:
        data, self.queued = b"".join(self.queued), []
        self.writes.append(data)
        return len(data)


async def test_what_each_writer_queued_in_one_turn_goes_out_in_one_write_at_its_end() -> None:
    metrics = build_metrics()
    scheduler = WriteScheduler(asyncio.get_running_loop(), metrics)
    a, b = QueueingWriter(scheduler), QueueingWriter(scheduler)
    for frame in (b"one", b"two", b"three"):
        a.push(frame)
        b.push(frame)
    assert a.writes == b.writes == []  # nothing before the end of the turn
    await eventually(lambda: len(a.writes) == 1)
    assert a.writes == b.writes == [b"onetwothree"]
    assert metrics.registry.get_sample_value("herald_bytes_written_total") == 22

    a.push(b"next turn")
    await eventually(lambda: len(a.writes) == 2)
    assert (a.writes[-1], b.writes) == (b"next turn", [b"onetwothree"])


async def test_flush_writes_at_once_and_leaves_nothing_for_the_end_of_the_turn() -> None:
    scheduler = WriteScheduler(asyncio.get_running_loop(), build_metrics())
    writer = QueueingWriter(scheduler)
    writer.push(b"now")
    scheduler.flush()
    assert writer.writes == [b"now"]
    await asyncio.sleep(0)  # the turn's own flush runs and finds nobody marked
    assert writer.writes == [b"now"]


class BrokenWriter:
    def write_queued(self) -> int:
        raise RuntimeError("Cannot call write() after write_eof()")


async def test_a_writer_that_fails_does_not_keep_the_others_of_its_turn_from_writing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler = WriteScheduler(asyncio.get_running_loop(), build_metrics())
    before, after = QueueingWriter(scheduler), QueueingWriter(scheduler)
    before.push(b"a")
    scheduler.mark(BrokenWriter())
    after.push(b"b")
    scheduler.flush()
    assert (before.writes, after.writes) == ([b"a"], [b"b"])
    assert "writing a connection's queued frames failed" in caplog.text
    after.push(b"c")  # marked again: not left with a queue nobody writes
    scheduler.flush()
    assert after.writes == [b"b", b"c"]
