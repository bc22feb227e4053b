"""herald_contract/memory_bus.py beyond the shared contract: delivery order, expiry by its clock."""

from __future__ import annotations

import asyncio

from herald_contract.envelope import StreamPosition
from herald_contract.lifecycle import BusState
from herald_contract.memory_bus import MemoryBus
from tests.herald_contract.bus_support import Q1, FakeClock, Recorder, packed


async def test_a_closed_memory_bus_drops_the_publications_it_scheduled() -> None:
    memory, listener = MemoryBus(), Recorder()
    await memory.start(listener)
    await memory.subscribe(Q1)
    await memory.publish(Q1, packed(1))
    await memory.close()
    await asyncio.sleep(0)  # one loop turn runs every callback scheduled before it
    assert listener.received == []
    assert memory.state is BusState.CLOSED


async def test_the_memory_bus_never_delivers_inside_publish() -> None:
    memory, listener = MemoryBus(), Recorder()
    await memory.start(listener)
    await memory.subscribe(Q1)
    await memory.publish(Q1, packed(1))
    await memory.publish(Q1, packed(2))
    assert listener.received == []
    await asyncio.sleep(0)
    assert listener.offsets(Q1) == [1, 2]
    await memory.close()


async def test_an_idle_channel_past_meta_ttl_starts_a_new_epoch_at_offset_1() -> None:
    clock = FakeClock()
    memory = MemoryBus(meta_ttl_s=60.0, clock=clock)
    await memory.start(Recorder())
    before = await memory.publish(Q1, packed(1))
    clock.advance(59.0)
    kept = await memory.publish(Q1, packed(2))
    clock.advance(60.001)
    after = await memory.publish(Q1, packed(3))
    assert kept.position == StreamPosition(before.position.epoch, 2)
    assert after.position.offset == 1
    assert after.position.epoch != before.position.epoch
    await memory.close()


async def test_an_event_id_is_forgotten_after_idempotency_ttl() -> None:
    clock = FakeClock()
    memory = MemoryBus(idempotency_ttl_s=10.0, clock=clock)
    await memory.start(Recorder())
    first = await memory.publish(Q1, packed(1), event_id="vote:1")
    clock.advance(9.0)
    again = await memory.publish(Q1, packed(1), event_id="vote:1")
    clock.advance(1.0)
    later = await memory.publish(Q1, packed(1), event_id="vote:1")
    assert (again.duplicate, again.position) == (True, first.position)
    assert (later.duplicate, later.position.offset) == (False, 2)
    await memory.close()
