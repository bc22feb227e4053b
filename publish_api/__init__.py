"""Herald's HTTP publish API: publishing for services not written in Python.

    POST /api/publish     one publication          {"channel", "data", "event_id"}
    POST /api/broadcast   the same data to many channels, each its own publication
    POST /api/batch       many different publications, in order per channel

Every publication is checked and made by the publishing library
(:func:`publisher.publish.check_publication`, :class:`publisher.Publisher` over Redis), or,
inside ``./herald run`` on embedded defaults, on the in-process bus the socket worker reads
(:class:`publish_api.targets.BusTarget`, the same checks): offsets, history and idempotency are
those of any other publication. Authenticated with API keys (:mod:`publish_api.auth`), on a
listener of its own (``HERALD_API_HOST``/``HERALD_API_PORT``, loopback by default).
docs/publish-api.md is the contract.

The package imports the contract and the publishing library, never the fleet, the Q&A core
or a composition root (pyproject.toml, [tool.importlinter]).

* :mod:`publish_api.settings`: the settings (``HERALD_API_*`` and the shared bus names);
* :mod:`publish_api.auth`: API keys, compared in constant time;
* :mod:`publish_api.schemas`: requests and replies (the OpenAPI document);
* :mod:`publish_api.errors`: the error tree and the one JSON shape of every error;
* :mod:`publish_api.targets`: where publications go (Redis or the in-process bus);
* :mod:`publish_api.app`: the FastAPI app and its body-size limit;
* :mod:`publish_api.metrics`: its Prometheus metrics;
* :mod:`publish_api.__main__`: ``python -m publish_api`` / ``herald-publish-api``.
"""
