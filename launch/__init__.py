"""Composition roots: the programs that put the packages together.

* :mod:`launch.embedded`: the Q&A site and one socket worker in one process on the
  in-process bus (``./herald run`` without Redis);
* :mod:`launch.system`: the socket fleet and the Q&A site as separate processes over Redis
  (``./herald run`` with ``HERALD_REDIS_URL`` or its alias ``REDIS_URL``);
* :mod:`launch.demo`: a demo publisher that keeps a fresh clone's pages moving
  (``./herald run --demo``);
* :mod:`launch.settings`: both programs' settings from one environment, the ports as options.

Nothing imports this package; it may import every other one.
"""
