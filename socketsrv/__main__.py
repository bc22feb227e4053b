"""``python -m socketsrv`` / ``herald-socketsrv``: run the socket fleet.

Settings come from ``HERALD_*`` environment variables (docs/configuration.md), then from
these flags. With no ``REDIS_URL`` it runs one worker on the in-process bus.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from socketsrv.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="herald-socketsrv", description=__doc__)
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--redis-url", dest="redis_url")
    p.add_argument("--log-level", dest="log_level")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings.from_env(os.environ, **overrides)
    except SettingsError as exc:
        print(f"herald-socketsrv: {exc}", file=sys.stderr)
        return 2
    from socketsrv.fleet import configure_logging, serve

    configure_logging(settings)

    return serve(settings, print_fn=lambda text: print(text, flush=True))


if __name__ == "__main__":
    sys.exit(main())
