"""``python -m qasite`` / ``herald-qa``: run the Q&A core, or migrate its database.

    herald-qa serve [--host H] [--port P] [--workers N]   # relay to REDIS_URL
    herald-qa migrate                                     # upgrade the schema, then exit
    herald-qa revision -m "what changed"                  # autogenerate a migration (dev)

Settings come from the environment (docs/qa-core.md#configuration). Without
``HERALD_REDIS_URL`` (or ``REDIS_URL``), ``serve`` keeps events in the outbox;
``python -m launch.embedded`` runs the Q&A core and a socket worker in one process on the
in-process bus instead. A setting that cannot work, an unreadable key or a port in use ends
the command with one line on stderr and a non-zero exit code (2 for a setting, 1 for a port).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from herald_contract.config import cannot_bind, configure_logging, uvicorn_log_config
from qasite import seed
from qasite.core.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="herald-qa", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to listen on (HERALD_QA_HOST, default 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (HERALD_QA_PORT, default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    revision = sub.add_parser("revision", help="autogenerate a migration from the models")
    revision.add_argument("-m", "--message", required=True)
    seed.add_parser(sub)
    return p


async def _migrate(settings: Settings) -> None:
    from qasite.core.db import Database, migrate

    db = Database.open(settings)
    try:
        await migrate(db.engine)
    finally:
        await db.close()


async def _revision(settings: Settings, message: str) -> None:
    from alembic import command

    from qasite.core.db import Database, alembic_config, migrate

    db = Database.open(settings)
    try:
        await migrate(db.engine)

        def generate(connection: object) -> None:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.revision(config, message=message, autogenerate=True)

        async with db.engine.begin() as conn:
            await conn.run_sync(generate)
    finally:
        await db.close()


def app_factory() -> object:
    """For uvicorn's ``--factory`` with several workers: settings from the environment."""
    from qasite.core.metrics import MULTIPROC_ENV
    from qasite.main import create_app

    settings = Settings.from_env(os.environ)  # the supervisor already checked it
    configure_logging(settings.log_level)
    return create_app(settings, metrics_multiproc_dir=os.environ.get(MULTIPROC_ENV))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    try:
        settings = Settings.from_env(os.environ, **overrides)
        if args.command == "serve":
            from qasite.core.keys import with_secrets

            settings = with_secrets(settings)  # an unreadable key fails here, in one line
    except SettingsError as exc:
        print(f"herald-qa: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        return 0
    if args.command == "seed":
        return seed.run(settings, args)
    if args.command == "revision":
        asyncio.run(_revision(settings, args.message))
        return 0
    if (why := cannot_bind(settings.host, settings.port)) is not None:
        where = f"{settings.host}:{settings.port}"
        print(
            f"herald-qa: cannot listen on {where} (HERALD_QA_PORT / --port): {why}", file=sys.stderr
        )
        return 1
    return _serve(settings, args.workers)


def _serve(settings: Settings, workers: int) -> int:
    import uvicorn

    from qasite.api.server import server_options

    log_config = uvicorn_log_config(settings.log_level)
    if workers > 1:
        from qasite.core.metrics import multiprocess_dir

        os.environ["HERALD_QA_HOST"], os.environ["HERALD_QA_PORT"] = (
            settings.host,
            str(settings.port),
        )
        # The workers (spawned) inherit a fresh metrics directory: /metrics sums over them.
        with multiprocess_dir(os.environ):
            uvicorn.run(
                "qasite.__main__:app_factory",
                factory=True,
                host=settings.host,
                port=settings.port,
                workers=workers,
                timeout_worker_healthcheck=settings.worker_healthcheck_timeout_s,
                log_config=log_config,
                **server_options(settings),
            )
        return 0
    from qasite.main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=log_config,
        **server_options(settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
