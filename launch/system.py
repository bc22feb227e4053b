"""The Q&A core and the socket fleet as separate processes over Redis (``./herald run`` with
``REDIS_URL`` set).

    REDIS_URL=redis://127.0.0.1:6379/0 python -m launch.system [--workers N] [--qa-workers M]

Starts ``python -m socketsrv --workers N`` and ``python -m qasite serve --workers M``,
each configured from the same environment as when run alone (``HERALD_*`` for the fleet,
``HERALD_QA_*`` and ``DATABASE_URL`` for the Q&A core), after migrating the database once.
In development the Q&A core's token
key pair is generated into its data directory first, and the fleet is pointed at the public
key (``HERALD_JWT_PUBLIC_KEY_FILE``) unless one is configured. SIGINT or SIGTERM stops both
(the fleet drains with close 4000 and a reconnect hint); if either exits, the other is
stopped and the exit code is the first one's. Without ``REDIS_URL``, use
``python -m launch.embedded`` (one process, the in-process bus).

This module starts the fleet as a program; it does not import ``socketsrv``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from types import FrameType

from qasite.core.keys import PUBLIC_KEY_FILE, with_secrets
from qasite.core.settings import Settings, SettingsError


def fleet_environment(env: Mapping[str, str], qa: Settings) -> dict[str, str]:
    """The fleet's environment: *env*, plus the Q&A core's token settings it must agree with."""
    out = dict(env)
    if "HERALD_JWT_PUBLIC_KEY_FILE" not in out and "HERALD_JWT_PUBLIC_KEY_PEM" not in out:
        out["HERALD_JWT_PUBLIC_KEY_FILE"] = str((qa.data_dir / PUBLIC_KEY_FILE).resolve())
    if qa.socket_token_audience is not None:
        out.setdefault("HERALD_JWT_AUDIENCE", qa.socket_token_audience)
    if qa.socket_token_issuer is not None:
        out.setdefault("HERALD_JWT_ISSUER", qa.socket_token_issuer)
    return out


def banner(qa: Settings, fleet_workers: int, qa_workers: int) -> str:
    http = f"http://{qa.host}:{qa.port}"
    return "\n".join(
        [
            f"Herald over Redis: the socket fleet ({fleet_workers} workers) and the Q&A core "
            f"({qa_workers} workers) as separate processes",
            f"  site:       {http}/   (live pages)",
            f"  Q&A API:    {http}/docs",
            f"  websocket:  {qa.socket_url}",
            f"  data:       {qa.data_dir.resolve()}",
            "Ctrl-C stops both.",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launch.system",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workers", type=int, default=2, help="socket fleet workers")
    parser.add_argument("--qa-workers", type=int, default=2, help="Q&A core workers")
    args = parser.parse_args(argv)
    if not os.environ.get("REDIS_URL") and not os.environ.get("HERALD_REDIS_URL"):
        parser.error("REDIS_URL is not set: run python -m launch.embedded instead")
    try:
        qa = Settings.from_env(os.environ)
    except SettingsError as exc:
        parser.error(str(exc))
    with_secrets(qa)  # the development key pair exists before the fleet reads it
    python = sys.executable
    # Migrate once here: several Q&A workers starting on an old schema would race to upgrade it.
    migrated = subprocess.run([python, "-m", "qasite", "migrate"], check=False)  # noqa: S603
    if migrated.returncode != 0:
        return migrated.returncode
    fleet = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        [python, "-m", "socketsrv", "--workers", str(args.workers)],
        env=fleet_environment(os.environ, qa),
    )
    core = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
        [python, "-m", "qasite", "serve", "--workers", str(args.qa_workers)]
    )
    children = [fleet, core]

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(banner(qa, args.workers, args.qa_workers), flush=True)
    first: int | None = None
    while first is None:
        for child in children:
            if (code := child.poll()) is not None:
                first = code
                break
        else:
            time.sleep(0.2)
    stop(signal.SIGTERM, None)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return first


if __name__ == "__main__":
    sys.exit(main())
