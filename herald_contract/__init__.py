"""The contract between publishers and the socket fleet, defined once.

Everything both sides must agree on lives here, and this package imports nothing else of
Herald's (tests/test_layout.py enforces it):

* :mod:`~herald_contract.channels`: the channel grammar (which names exist, who may read them);
* :mod:`~herald_contract.envelope`: the msgpack envelope a publication travels in;
* :mod:`~herald_contract.keys`: the Redis key layout (one hash slot per channel);
* :mod:`~herald_contract.history`: retention, epochs, event ids, the "no gap" rule;
* :mod:`~herald_contract.stream`: what a publish and a history read return;
* ``lua/`` and :mod:`~herald_contract.redis_scripts`: the atomic publish and history scripts;
* :mod:`~herald_contract.bus`: the ``Bus`` interface, its guarantees, and the listener and
  observer a bus calls;
* :mod:`~herald_contract.lifecycle`: the bus states and their guarded transitions;
* :mod:`~herald_contract.memory_bus`: the in-process bus (the embedded default; imports no
  Redis client);
* :mod:`~herald_contract.redis_bus`: the Redis bus, for a fleet, built on
  :mod:`~herald_contract.redis_pubsub` (its pub/sub connection) and
  :mod:`~herald_contract.backoff` (its reconnect policy);
* :mod:`~herald_contract.recovering_bus`, :mod:`~herald_contract.pubsub_wire`: what the Redis
  bus and the Cluster bus share (lifecycle, recovery and observer calls; pub/sub replies);
* :mod:`~herald_contract.redis_urls`, :mod:`~herald_contract.url_parts` and
  :mod:`~herald_contract.redis_pools`: the Redis URL
  forms (plain, ``redis+sentinel://``) and the connection pools they give, so a Sentinel
  failover is followed by every Redis user;
* :mod:`~herald_contract.redis_cluster_bus`: the Redis Cluster bus (sharded pub/sub), built on
  :mod:`~herald_contract.cluster_pubsub` (one SSUBSCRIBE connection per shard primary),
  :mod:`~herald_contract.cluster_urls` (``redis+cluster://``) and
  :mod:`~herald_contract.cluster_client` (the command client a URL names);
* :mod:`~herald_contract.errors`: the one exception tree of the package;
* :mod:`~herald_contract.config`: the settings rules both programs share (pydantic-settings;
  the publishing library never imports it).

The three buses pass tests/herald_contract/test_bus_contract.py. The third-party packages needed
are msgpack, redis for the Redis modules and pydantic-settings for ``config``.
"""
