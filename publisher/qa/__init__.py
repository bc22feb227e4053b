"""The Q&A core: a small FastAPI site backend whose every visible write reaches the sockets.

Each module holds one idea (docs/qa-core.md has the map):

* :mod:`~publisher.qa.settings`: the frozen settings object, built once at start-up;
* :mod:`~publisher.qa.models`, :mod:`~publisher.qa.db`, ``migrations/``: storage;
* :mod:`~publisher.qa.outbox` and :mod:`~publisher.qa.relay`: events written in the
  transaction of the change they describe, then published to the bus in order;
* :mod:`~publisher.qa.app` and ``routes/``: the HTTP API, one router per resource.

Only :mod:`publisher.qa.embedded` imports :mod:`socketsrv` (embedded mode runs a socket
worker in the same process, and its in-process bus is handed to the relay as an object that
has ``publish(channel, packed_data, event_id=...)``); nothing else here imports that module.
"""
