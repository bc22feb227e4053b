"""``python -m publish_api`` (``herald-publish-api``): the publish API over Redis.

    HERALD_REDIS_URL=redis://127.0.0.1:6379/0 HERALD_API_KEYS=billing:<key> \
        python -m publish_api [--port 8090]

One process (one event loop; run several behind a load balancer for more). Settings are
``HERALD_API_*`` and the shared ``HERALD_*`` bus names (docs/configuration.md); a setting
that cannot work ends it with one line and exit code 2, a port in use with exit code 1.
SIGINT or SIGTERM stops it after the requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from herald_contract.config import SettingsError, cannot_bind, configure_logging, uvicorn_log_config
from publish_api.app import create_app
from publish_api.auth import ApiKeys
from publish_api.settings import ApiSettings
from publish_api.targets import PublishTarget
from publisher.publish import Publisher

DEV_KEY_FILE = "publish-api-key"
DEV_KEY_NAME = "dev"


def development_keys(env: Mapping[str, str], data_dir: Path) -> dict[str, str]:
    """*env* with ``HERALD_API_KEYS`` set to a development key when none is configured: the
    key is generated once into *data_dir*/publish-api-key (mode 0600) and kept there. For the
    launchers of ``./herald run``; ``python -m publish_api`` alone never invents a key."""
    if env.get("HERALD_API_KEYS"):
        return dict(env)
    path = data_dir / DEV_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
    return {**env, "HERALD_API_KEYS": f"{DEV_KEY_NAME}:{path.read_text().strip()}"}


def publisher_for(settings: ApiSettings) -> Publisher:
    """The publishing library on *settings*' Redis, with the installation's retention."""
    assert settings.redis_url is not None
    return Publisher(
        settings.redis_url,
        prefix=settings.key_prefix,
        history_size=settings.history_size,
        history_ttl_s=settings.history_ttl_s,
        meta_ttl_s=settings.meta_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        namespaces=settings.namespaces(),
        socket_timeout_s=settings.socket_timeout_s,
    )


def build_server(settings: ApiSettings, target: PublishTarget) -> uvicorn.Server:
    """A uvicorn server of the API on *target*, not started (``serve()`` it)."""
    app = create_app(
        target,
        ApiKeys(settings.keys),
        max_body_bytes=settings.max_body_bytes,
        namespaces=settings.namespaces(),
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config("WARNING"),
        access_log=False,
        server_header=False,
    )
    return uvicorn.Server(config)


def checked_settings(env: Mapping[str, str], **overrides: object) -> ApiSettings:
    """The settings, or :class:`SettingsError` (also when no key is set)."""
    settings = ApiSettings.from_env(env, **overrides)
    if not settings.keys:
        raise SettingsError(
            "keys", "no API key is set: name:key[,name:key...]", env="HERALD_API_KEYS"
        )
    return settings


async def _serve(settings: ApiSettings) -> None:
    async with publisher_for(settings) as publisher:
        await build_server(settings, publisher).serve()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m publish_api",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", help="the API's port (HERALD_API_PORT, default 8090)")
    args = parser.parse_args(argv)
    try:
        settings = checked_settings(os.environ, **({"port": args.port} if args.port else {}))
        if settings.redis_url is None:
            raise SettingsError(
                "redis_url",
                "is not set: the publish API alone publishes over Redis (./herald run"
                " runs it on the in-process bus)",
                env="HERALD_REDIS_URL",
            )
    except SettingsError as exc:
        print(f"publish_api: {exc}", file=sys.stderr)
        return 2
    if (why := cannot_bind(settings.host, settings.port)) is not None:
        print(
            f"publish_api: cannot listen on {settings.host}:{settings.port}"
            f" (HERALD_API_PORT): {why}",
            file=sys.stderr,
        )
        return 1
    configure_logging(settings.log_level)
    try:
        import uvloop
    except ImportError:  # the api extra installs it; without it, the standard loop
        asyncio.run(_serve(settings))
    else:
        # uvicorn picks uvloop only when it creates the loop itself (uvicorn.run); this
        # process makes its own, and the standard loop cost a third more CPU per request.
        uvloop.run(_serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
