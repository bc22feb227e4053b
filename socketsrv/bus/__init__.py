"""The bus between publishers and socket workers: one contract, two implementations.

* :class:`socketsrv.bus.memory.MemoryBus`: in-process, the embedded default;
* :class:`socketsrv.bus.redis.RedisBus`: Redis pub/sub plus streams, for a fleet.

Both pass tests/socketsrv/bus/test_contract.py.
"""
