"""Composition roots: the programs that put the packages together.

* :mod:`launch.embedded`: the Q&A site and one socket worker in one process on the
  in-process bus (``./herald run`` without Redis);
* :mod:`launch.system`: the socket fleet and the Q&A site as separate processes over Redis
  (``./herald run`` with ``HERALD_REDIS_URL`` or its alias ``REDIS_URL``);
* :mod:`launch.demo`: a demo publisher that keeps a fresh clone's pages moving
  (``./herald run --demo``);
* :mod:`launch.prober`: the end-to-end prober, probes published through the real path and
  timed on websockets through the public endpoint (``./herald run`` starts it; its
  connections in :mod:`launch.probe_connection`, its bookkeeping in :mod:`launch.probe_ledger`);
* :mod:`launch.settings`: both programs' settings from one environment, the ports as options;
* :mod:`launch.hosts`: several fleet hosts on 127.0.0.x behind HAProxy, and a rolling deploy
  (``./herald hosts up``);
* :mod:`launch.redis_cluster`: a local Redis Cluster of primaries and replicas from
  redis-server processes;
* :mod:`launch.cluster`: the production shape on one machine: that cluster, fleet hosts
  behind HAProxy and the Q&A core (``./herald cluster up``).

Nothing imports this package; it may import every other one.
"""
