"""Composition roots: the programs that put the packages together.

* :mod:`launch.embedded`: the Q&A site and one socket worker in one process on the
  in-process bus (``./herald run`` without Redis);
* :mod:`launch.system`: the socket fleet and the Q&A site as separate processes over Redis
  (``./herald run`` with ``REDIS_URL``);
* :mod:`launch.demo`: a demo publisher that keeps a fresh clone's pages moving.

Nothing imports this package; it may import every other one.
"""
