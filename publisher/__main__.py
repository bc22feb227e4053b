"""``python -m publisher CHANNEL JSON_DATA``: see :mod:`publisher.cli`."""

from publisher.cli import main

raise SystemExit(main())
