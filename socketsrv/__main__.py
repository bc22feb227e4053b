"""``python -m socketsrv`` / ``herald-socketsrv``: run the socket fleet.

Settings come from ``HERALD_*`` environment variables (docs/configuration.md), then from
these flags. With no ``HERALD_REDIS_URL`` (or ``REDIS_URL``) it runs one worker on the
in-process bus. A setting that cannot work or a port in use ends it with one line on stderr
and a non-zero exit code (2 for a setting, 1 for a port).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from socketsrv.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herald-socketsrv",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", help="address to listen on (HERALD_HOST, default 127.0.0.1)")
    p.add_argument("--port", help="port of every worker (HERALD_PORT, default 8000)")
    p.add_argument("--workers", help="worker processes (HERALD_WORKERS, default 1)")
    p.add_argument("--redis-url", dest="redis_url", help="HERALD_REDIS_URL (alias REDIS_URL)")
    p.add_argument("--log-level", dest="log_level", help="HERALD_LOG_LEVEL, default INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings.from_env(os.environ, **overrides)
    except SettingsError as exc:
        print(f"herald-socketsrv: {exc}", file=sys.stderr)
        return 2
    from socketsrv.fleet import StartupError, configure_logging, serve

    configure_logging(settings)
    try:
        return serve(settings, print_fn=lambda text: print(text, flush=True))
    except StartupError as exc:
        print(f"herald-socketsrv: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
