"""The contract between publishers and the socket fleet, defined once.

Everything both sides must agree on lives here, and this package imports nothing else of
Herald's (tests/test_layout.py enforces it):

* :mod:`~herald_contract.channels`: the channel grammar (which names exist, who may read them);
* :mod:`~herald_contract.envelope`: the msgpack envelope a publication travels in;
* :mod:`~herald_contract.keys`: the Redis key layout (one hash slot per channel);
* :mod:`~herald_contract.history`: retention, epochs, event ids, the "no gap" rule;
* ``lua/`` and :mod:`~herald_contract.redis_scripts`: the atomic publish and history scripts;
* :mod:`~herald_contract.bus`: the ``Bus`` interface and its guarantees;
* :mod:`~herald_contract.memory_bus`: the in-process bus (the embedded default; imports no
  Redis client);
* :mod:`~herald_contract.redis_bus`: the Redis bus, for a fleet.

Both buses pass tests/herald_contract/test_bus_contract.py. The only third-party packages
needed are msgpack, and redis for the Redis modules.
"""
