"""Both programs' settings for a launcher: one environment, the ports as options.

:func:`build_settings` is how :mod:`launch.embedded` and :mod:`launch.system` read the
environment: the site's and the fleet's ports may come from options, and the pages' socket URL
follows the fleet's address unless it is set (the public base URL follows the site's port in
:class:`qasite.core.settings.Settings`), so changing only the ports never leaves the pages
connected to another instance. :func:`ports_taken` refuses a port in use before anything
starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from herald_contract.config import cannot_bind
from qasite.core.settings import Settings
from socketsrv.settings import Settings as SocketSettings


def build_settings(
    env: Mapping[str, str], *, port: str | None = None, socket_port: str | None = None
) -> tuple[Settings, SocketSettings]:
    """Both programs' settings from *env* and the ports given as options.

    The pages' socket URL follows the worker's address unless ``HERALD_QA_SOCKET_URL`` is set
    (the public base URL follows the site's port the same way, in :class:`Settings`).
    Raises :class:`SettingsError`.
    """
    socket_settings = SocketSettings.from_env(
        env, **({"port": socket_port} if socket_port is not None else {})
    )
    qa_overrides: dict[str, Any] = {"port": port} if port is not None else {}
    if not env.get("HERALD_QA_SOCKET_URL"):
        qa_overrides["socket_url"] = fleet_url(socket_settings.host, socket_settings.port)
    return Settings.from_env(env, **qa_overrides), socket_settings


def fleet_url(host: str, port: int) -> str:
    """The websocket URL of a fleet listening on *host*:*port*, as a client on this machine
    reaches it (the pages' default socket URL, and the prober's)."""
    return f"ws://{_shown(host)}:{port}/ws"


def _shown(host: str) -> str:
    """The address a browser on this machine uses for a server listening on *host*."""
    return "127.0.0.1" if host in ("0.0.0.0", "::") else f"[{host}]" if ":" in host else host


def ports_taken(qa: Settings, fleet: SocketSettings) -> str | None:
    """The first port of *qa* and *fleet* that cannot be bound, as one line; else None."""
    for host, port, variable in (
        (fleet.host, fleet.port, "HERALD_PORT / --socket-port"),
        (qa.host, qa.port, "HERALD_QA_PORT / --port"),
    ):
        if (why := cannot_bind(host, port)) is not None:
            return f"cannot listen on {host}:{port} ({variable}): {why}"
    return None


def launcher_parser(prog: str, doc: str | None, *, fleet: str) -> argparse.ArgumentParser:
    """The options both launchers share: the two ports (*fleet* names what listens on the
    socket port, for the help text) and ``--demo``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", help="the Q&A site's port (HERALD_QA_PORT, default 8080)")
    parser.add_argument("--socket-port", help=f"{fleet}'s port (HERALD_PORT, default 8000)")
    return parser
