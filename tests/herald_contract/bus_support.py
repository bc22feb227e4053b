"""What the bus tests share: a recording listener and observer, a fake clock, a harness.

Used by test_bus_contract.py (both buses), test_memory_bus.py and test_redis_bus.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from herald_contract.bus import Bus
from herald_contract.envelope import Envelope, decode_envelope
from herald_contract.keys import KeyLayout
from herald_contract.memory_bus import MemoryBus
from tests.support.redis_cluster import RedisClusterTestbed
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

Q1, Q2, Q3 = "question:1", "question:2", "question:3"
BARRIER = "questions:new"
KEYS = KeyLayout("test")


class FakeClock:
    """The memory bus's clock: time moves only when a test says so."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


class Observer:
    """A bus observer that writes down what it is told (the fleet's counts metrics)."""

    def __init__(self) -> None:
        self.live: list[bool] = []
        self.reconnects = 0
        self.shards: list[int] = []
        self.recoveries: list[tuple[str, int]] = []
        """(reason, channels resubscribed) of each recovery."""
        self.recovery_seconds: list[float] = []

    def live_changed(self, live: bool) -> None:
        self.live.append(live)

    def reconnected(self) -> None:
        self.reconnects += 1

    def shard_connections(self, count: int) -> None:
        self.shards.append(count)

    def recovered(self, reason: str, channels: int, seconds: float) -> None:
        self.recoveries.append((reason, channels))
        self.recovery_seconds.append(seconds)


class Recorder:
    """A bus listener that writes down everything it is told."""

    def __init__(self) -> None:
        self.received: list[tuple[str, bytes]] = []
        self.events: list[str] = []

    def on_publication(self, channel: str, envelope: bytes) -> None:
        self.received.append((channel, envelope))

    def on_bus_lost(self) -> None:
        self.events.append("lost")

    def on_bus_restored(self) -> None:
        self.events.append("restored")

    def envelopes(self, channel: str) -> list[Envelope]:
        return [decode_envelope(raw) for name, raw in self.received if name == channel]

    def offsets(self, channel: str) -> list[int]:
        return [envelope.offset for envelope in self.envelopes(channel)]


def packed(data: Any) -> bytes:
    return msgpack.packb(data)


@dataclass
class Harness:
    """A started bus, its listener, and the means to hurt it."""

    kind: str
    bus: Bus
    listener: Recorder
    server: RedisServer | RedisClusterTestbed | None = None
    observer: Observer = field(default_factory=Observer)
    clock: FakeClock = field(default_factory=FakeClock)

    async def publish(self, channel: str, data: Any = None, *, event_id: str = "") -> int:
        result = await self.bus.publish(channel, packed(data), event_id=event_id)
        return result.position.offset

    async def settle(self) -> None:
        """Return once everything published so far has been delivered.

        A publication on a subscribed barrier channel comes after every earlier one, on
        either bus (one pub/sub connection; one call_soon queue).
        """
        await self.bus.subscribe(BARRIER)
        offset = await self.publish(BARRIER)
        await eventually(lambda: offset in self.listener.offsets(BARRIER))

    async def outlive_the_history_ttl(self, channel: str, history_ttl_s: float) -> None:
        """Return once *channel*'s history is older than *history_ttl_s*.

        The memory bus's clock is moved on; Redis expires the history key by its own clock,
        which is waited for (bounded), never slept through.
        """
        if self.server is None:
            self.clock.advance(history_ttl_s + 0.001)
            return
        client = self.server.client()
        await eventually(lambda: not client.exists(KEYS.history(channel)))

    def stored_channels(self) -> int:
        """What the bus keeps: the memory bus's channels, or the keys on the Redis primaries."""
        if isinstance(self.bus, MemoryBus):
            return self.bus.channel_count
        assert self.server is not None
        if isinstance(self.server, RedisClusterTestbed):
            return sum(int(node.client().dbsize()) for node in self.server.primaries())
        return int(self.server.client().dbsize())

    def lose_history(self) -> None:
        if isinstance(self.bus, MemoryBus):
            self.bus.forget_history()
        else:
            assert self.server is not None
            self.server.client().flushall()
