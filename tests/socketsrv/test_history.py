"""History reads: one read per channel and one bus call per loop turn; each reader gets its
own suffix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from herald_contract.bus import BusListener, BusUnavailable, HistoryRead, HistoryResult
from herald_contract.envelope import StreamPosition, pack_data
from herald_contract.memory_bus import MemoryBus
from socketsrv.history import (
    FIRST_READ_PUBLICATIONS,
    PIPELINE_READS,
    HistoryReader,
    Recovered,
    suffix_after,
)
from socketsrv.publication import Publication, decode_publication


def pubs(channel: str, epoch: str, offsets: range) -> list[Publication]:
    return [Publication(channel, epoch, o, 0, {"o": o}) for o in offsets]


def decode_all(channel: str, envelopes: list[bytes]) -> list[Publication]:
    return [decode_publication(channel, e) for e in envelopes]


class NullListener:
    def on_publication(self, channel: str, envelope: bytes) -> None: ...
    def on_bus_lost(self) -> None: ...
    def on_bus_restored(self) -> None: ...


class CountingBus(MemoryBus):
    def __init__(self, history_size: int = 20) -> None:
        super().__init__(history_size=history_size)
        self.reads: list[tuple[str, StreamPosition | None]] = []
        self.calls: list[int] = []
        """The number of reads of each bus call."""
        self.down = False

    async def history_many(self, reads: Sequence[HistoryRead]) -> list[HistoryResult]:
        self.calls.append(len(reads))
        return await super().history_many(reads)

    async def history(
        self, channel: str, since: StreamPosition | None, limit: int
    ) -> HistoryResult:
        self.reads.append((channel, since))
        if self.down:
            raise BusUnavailable("test")
        return await super().history(channel, since, limit)


@pytest.fixture
async def bus() -> AsyncIterator[CountingBus]:
    b = CountingBus()
    listener: BusListener = NullListener()
    await b.start(listener)
    yield b
    await b.close()


async def publish(bus: CountingBus, channel: str, count: int) -> StreamPosition:
    position = StreamPosition("", 0)
    for i in range(count):
        position = (await bus.publish(channel, pack_data(i))).position
    return position


# suffix_after, the pure part

TOP = StreamPosition("e1", 10)


def test_a_reader_without_a_position_gets_the_position_only() -> None:
    assert suffix_after(TOP, pubs("q", "e1", range(5, 11)), None).publications == []


def test_a_reader_at_the_top_is_complete_with_nothing_to_replay() -> None:
    result = suffix_after(TOP, [], StreamPosition("e1", 10))
    assert (result.complete, result.publications) == (True, [])


def test_a_reader_inside_the_window_gets_exactly_its_suffix() -> None:
    result = suffix_after(TOP, pubs("q", "e1", range(5, 11)), StreamPosition("e1", 7))
    assert result.complete
    assert [p.offset for p in result.publications] == [8, 9, 10]


@pytest.mark.parametrize(
    ("since", "window"),
    [
        pytest.param(StreamPosition("e1", 3), range(5, 11), id="before-the-window"),
        pytest.param(StreamPosition("e0", 7), range(5, 11), id="another-epoch"),
        pytest.param(StreamPosition("e1", 12), range(5, 11), id="ahead-of-the-top"),
        pytest.param(StreamPosition("e1", 7), range(9, 11), id="a-hole-after-the-position"),
    ],
)
def test_a_reader_the_history_cannot_cover_is_told_so(since: StreamPosition, window: range) -> None:
    result = suffix_after(TOP, pubs("q", "e1", window), since)
    assert (result.complete, result.publications) == (False, [])


NOTHING = StreamPosition("-", 0)


def test_a_reader_that_saw_nothing_gets_the_whole_first_epoch_when_the_history_holds_it() -> None:
    result = suffix_after(StreamPosition("e1", 3), pubs("q", "e1", range(1, 4)), NOTHING)
    assert result.complete
    assert [p.offset for p in result.publications] == [1, 2, 3]
    assert suffix_after(NOTHING, [], NOTHING) == Recovered(NOTHING, True, [])


@pytest.mark.parametrize(
    ("since", "window"),
    [
        pytest.param(NOTHING, range(2, 4), id="the-first-offsets-are-gone"),
        pytest.param(StreamPosition("-", 2), range(1, 4), id="after-nothing-in-an-unnamed-epoch"),
    ],
)
def test_a_reader_past_nothing_that_the_history_cannot_vouch_for_fails(
    since: StreamPosition, window: range
) -> None:
    result = suffix_after(StreamPosition("e1", 3), pubs("q", "e1", window), since)
    assert (result.complete, result.publications) == (False, [])


async def test_readers_that_saw_nothing_are_answered_from_the_first_epoch(bus: CountingBus) -> None:
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    assert (await reader.read("q:9", NOTHING)).position == NOTHING
    await publish(bus, "q:9", 2)
    result = await reader.read("q:9", NOTHING)
    assert result.complete
    assert [p.offset for p in result.publications] == [1, 2]


# Batching


async def test_readers_of_one_channel_in_one_loop_turn_share_one_bus_read(
    bus: CountingBus,
) -> None:
    top = await publish(bus, "question:1", 10)
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    positions = [StreamPosition(top.epoch, o) for o in (2, 5, 9, 10)] + [None]
    results = await asyncio.gather(*(reader.read("question:1", p) for p in positions))
    assert bus.reads == [("question:1", StreamPosition(top.epoch, 2))]
    assert [[p.offset for p in r.publications] for r in results] == [
        list(range(3, 11)),
        list(range(6, 11)),
        [10],
        [],
        [],
    ]
    assert all(r.complete for r in results)


async def test_readers_in_later_turns_or_of_other_channels_read_again(bus: CountingBus) -> None:
    await publish(bus, "question:1", 2)
    await publish(bus, "question:2", 2)
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    await asyncio.gather(reader.read("question:1", None), reader.read("question:2", None))
    await reader.read("question:1", None)
    assert sorted(channel for channel, _ in bus.reads) == ["question:1", "question:1", "question:2"]


async def test_reads_of_many_channels_in_one_turn_go_to_the_bus_in_one_call(
    bus: CountingBus,
) -> None:
    channels = [f"user:{n}" for n in range(1, 41)]
    for n, channel in enumerate(channels):
        await publish(bus, channel, n % 3)
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    results = await asyncio.gather(*(reader.read(c, StreamPosition("e", 0)) for c in channels))
    assert bus.calls == [40]
    assert [r.position.offset for r in results] == [n % 3 for n in range(40)]


async def test_a_turn_with_more_reads_than_one_pipeline_holds_is_split(
    bus: CountingBus,
) -> None:
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    count = PIPELINE_READS * 2 + 1
    results = await asyncio.gather(*(reader.read(f"user:{n}", None) for n in range(1, count + 1)))
    assert sorted(bus.calls) == [1, PIPELINE_READS, PIPELINE_READS]
    assert len(results) == count


async def test_readers_asking_about_different_epochs_get_one_read_each(bus: CountingBus) -> None:
    top = await publish(bus, "question:1", 3)
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    current, stale = await asyncio.gather(
        reader.read("question:1", StreamPosition(top.epoch, 1)),
        reader.read("question:1", StreamPosition("old-epoch", 1)),
    )
    assert len(bus.reads) == 2
    assert [p.offset for p in current.publications] == [2, 3]
    assert not stale.complete


async def test_an_unavailable_bus_fails_every_reader_of_the_batch(bus: CountingBus) -> None:
    bus.down = True
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    results = await asyncio.gather(
        reader.read("question:1", None), reader.read("question:1", None), return_exceptions=True
    )
    assert all(isinstance(r, BusUnavailable) for r in results)
    assert len(bus.reads) == 1


async def test_a_cancelled_reader_does_not_disturb_the_others(bus: CountingBus) -> None:
    await publish(bus, "question:1", 4)
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    doomed = asyncio.ensure_future(reader.read("question:1", None))
    kept = asyncio.ensure_future(reader.read("question:1", None))
    await asyncio.sleep(0)
    doomed.cancel()
    assert (await kept).position.offset == 4


# Bounded reads (issue 12, item 1)


def test_a_read_that_stops_short_of_the_top_is_complete_with_more_to_read() -> None:
    result = suffix_after(TOP, pubs("q", "e1", range(5, 8)), StreamPosition("e1", 4))
    assert result.complete
    assert result.more
    assert [p.offset for p in result.publications] == [5, 6, 7]
    assert not suffix_after(TOP, pubs("q", "e1", range(5, 11)), StreamPosition("e1", 4)).more


async def test_a_read_asks_for_at_most_its_limit_and_says_what_is_left(bus: CountingBus) -> None:
    top = await publish(bus, "question:1", 12)
    reader = HistoryReader(bus, limit=20, decode=decode_all)
    result = await reader.read("question:1", StreamPosition(top.epoch, 2), 4)
    assert result.complete
    assert result.more
    assert [p.offset for p in result.publications] == [3, 4, 5, 6]


async def test_readers_far_apart_in_one_turn_get_a_bounded_read_each(bus: CountingBus) -> None:
    bus_size = FIRST_READ_PUBLICATIONS * 3
    big = CountingBus(history_size=bus_size)
    await big.start(NullListener())
    try:
        top = await publish(big, "question:1", bus_size)
        reader = HistoryReader(big, limit=bus_size, decode=decode_all)
        near, far = 1, 1 + FIRST_READ_PUBLICATIONS
        results = await asyncio.gather(
            reader.read("question:1", StreamPosition(top.epoch, near), 2),
            reader.read("question:1", StreamPosition(top.epoch, near + 1), 2),
            reader.read("question:1", StreamPosition(top.epoch, far), 2),
        )
        assert big.calls == [2]
        assert [since.offset for _, since in big.reads if since] == [near, far]
        assert [r.publications[0].offset for r in results] == [near + 1, near + 2, far + 1]
        assert all(len(r.publications) <= 3 for r in results)
    finally:
        await big.close()
