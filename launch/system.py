"""The Q&A core and the socket fleet as separate processes over Redis (``./herald run`` with
``HERALD_REDIS_URL`` or ``REDIS_URL`` set).

    HERALD_REDIS_URL=redis://127.0.0.1:6379/0 python -m launch.system \
        [--port 8080] [--socket-port 8000] [--workers N] [--qa-workers M] [--demo] [--no-prober]

Starts ``python -m socketsrv --workers N`` and ``python -m qasite serve --workers M``, the
end-to-end prober ``python -m launch.prober`` (pointed at the fleet's port unless
``HERALD_PROBE_URL`` is set; not with ``--no-prober``), the HTTP publish API
``python -m publish_api`` (on ``HERALD_API_PORT``, 8090 on loopback, with a development key
in the data directory unless ``HERALD_API_KEYS`` is set), and ``python -m launch.demo`` with
``--demo``, each configured from the same environment as
when run alone (``HERALD_*`` for the fleet, ``HERALD_QA_*`` and ``DATABASE_URL`` for the Q&A
core; the Redis URL, key prefix and history retention are shared names both read), after
migrating the database once. ``--port`` / ``--socket-port`` win over ``HERALD_QA_PORT`` /
``HERALD_PORT``; the pages' socket URL and the public base URL follow them unless
``HERALD_QA_SOCKET_URL`` / ``HERALD_QA_PUBLIC_BASE_URL`` are set. In development the Q&A core's
token key pair is generated into its data directory first, and the fleet is pointed at the
public key (``HERALD_JWT_PUBLIC_KEY_FILE``) unless one is configured.

A setting that cannot work or a port in use is refused before anything starts, in one line
with a non-zero exit code. SIGINT or SIGTERM stops every child (the fleet drains with close
4000 and a reconnect hint); if the fleet or the Q&A core exits, the others are stopped and the
exit code is the first one's; the prober and the demo publisher are helpers, whose exit stops
nothing (a prober whose metrics port is taken, or a publish API whose port is, is not
started, with one line saying so).
Without a Redis URL, use :mod:`launch.embedded`.
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

from herald_contract.config import cannot_bind
from launch.prober import ProberSettings, metrics_port_taken, prober_settings
from launch.settings import build_settings, fleet_url, launcher_parser, ports_taken
from publish_api.__main__ import checked_settings, development_keys
from publish_api.settings import ApiSettings
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


def _parser() -> argparse.ArgumentParser:
    parser = launcher_parser("python -m launch.system", __doc__, fleet="the socket fleet")
    parser.add_argument("--workers", type=int, default=2, help="socket fleet workers (2)")
    parser.add_argument("--qa-workers", type=int, default=2, help="Q&A core workers (2)")
    parser.add_argument(
        "--demo", action="store_true", help="also run python -m launch.demo (demo events)"
    )
    parser.add_argument(
        "--no-prober", action="store_true", help="do not run python -m launch.prober"
    )
    return parser


def _fail(message: str, code: int) -> int:
    print(f"launch.system: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        qa, fleet = build_settings(os.environ, port=args.port, socket_port=args.socket_port)
        qa = with_secrets(qa)  # the development key pair exists before the fleet reads it
        probe = (
            None
            if args.no_prober
            else prober_settings(os.environ, url=fleet_url(fleet.host, fleet.port))
        )
        api_env = development_keys(os.environ, qa.data_dir)
        api = checked_settings(api_env)
    except SettingsError as exc:
        return _fail(str(exc), 2)
    if qa.redis_url is None or fleet.redis_url is None:
        return _fail("HERALD_REDIS_URL is not set: run python -m launch.embedded instead", 2)
    if (taken := ports_taken(qa, fleet)) is not None:
        return _fail(taken, 1)
    python = sys.executable
    # Migrate once here: several Q&A workers starting on an old schema would race to upgrade it.
    migrated = subprocess.run([python, "-m", "qasite", "migrate"], check=False)  # noqa: S603
    if migrated.returncode != 0:
        return migrated.returncode
    core_env = {**os.environ, "HERALD_QA_PORT": str(qa.port), "HERALD_QA_SOCKET_URL": qa.socket_url}
    core_env["HERALD_QA_PUBLIC_BASE_URL"] = qa.public_base_url
    if qa.is_development:  # as in embedded mode: sign-ups need the link, unless set false
        core_env.setdefault("HERALD_QA_DEV_MAILBOX", "true")
    fleet_env = {**fleet_environment(os.environ, qa), "HERALD_PORT": str(fleet.port)}
    children = [
        subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [python, "-m", "socketsrv", "--workers", str(args.workers)], env=fleet_env
        ),
        subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            [python, "-m", "qasite", "serve", "--workers", str(args.qa_workers)], env=core_env
        ),
    ]
    helpers = [subprocess.Popen([python, "-m", "launch.demo"])] if args.demo else []  # noqa: S603
    print(banner(qa, args.workers, args.qa_workers), flush=True)
    if probe is not None and (prober := _start_prober(python, probe)) is not None:
        helpers.append(prober)
    if (publish_api := _start_api(python, api, api_env)) is not None:
        helpers.append(publish_api)
    return _supervise(children, helpers)


def _start_prober(python: str, probe: ProberSettings) -> subprocess.Popen[bytes] | None:
    """``python -m launch.prober`` on *probe*'s URL; None (said on stderr) when its metrics
    port is taken: the system runs without it."""
    if (taken := metrics_port_taken(probe)) is not None:
        print(f"launch.system: the prober is not started: {taken}", file=sys.stderr, flush=True)
        return None
    print(
        f"  prober:     {probe.connections} connections to {probe.url}, {probe.channel};"
        f" /metrics on http://{probe.metrics_host}:{probe.metrics_port}/metrics",
        flush=True,
    )
    env = {**os.environ, "HERALD_PROBE_URL": probe.url}
    return subprocess.Popen([python, "-m", "launch.prober"], env=env)  # noqa: S603


def _start_api(
    python: str, api: ApiSettings, env: dict[str, str]
) -> subprocess.Popen[bytes] | None:
    """``python -m publish_api``; None (said on stderr) when its port is taken."""
    if (why := cannot_bind(api.host, api.port)) is not None:
        print(
            f"launch.system: the publish API is not started: cannot listen on"
            f" {api.host}:{api.port} (HERALD_API_PORT): {why}",
            file=sys.stderr,
            flush=True,
        )
        return None
    names = ", ".join(name for name, _ in api.keys)
    print(
        f"  publish API: http://{api.host}:{api.port}/api/   (OpenAPI at /openapi.json; keys:"
        f" {names}; docs/publish-api.md)",
        flush=True,
    )
    return subprocess.Popen([python, "-m", "publish_api"], env=env)  # noqa: S603


def _supervise(
    children: list[subprocess.Popen[bytes]], helpers: list[subprocess.Popen[bytes]]
) -> int:
    """Until a signal or the first of *children* exits; then stop all. The first exit code."""
    everyone = [*children, *helpers]

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in everyone:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    first: int | None = None
    while first is None:
        for child in children:
            if (code := child.poll()) is not None:
                first = code
                break
        else:
            time.sleep(0.2)
    stop(signal.SIGTERM, None)
    for child in everyone:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return first


if __name__ == "__main__":
    sys.exit(main())
