"""The demo publisher: a few live events so that a fresh clone shows something moving.

    python -m launch.demo        # publishes to HERALD_REDIS_URL (or REDIS_URL) until SIGINT

It publishes through the same path as any publisher: a question whose score changes every
second (absolute score + version, state not deltas) and a new question every five seconds.
``./herald run --demo`` runs it against the bus the system uses: :mod:`launch.embedded`
calls :func:`run_demo` on its in-process bus, :mod:`launch.system` starts this module as a
program beside the fleet, publishing to Redis with the shared key prefix and history
settings (herald_contract/config.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from herald_contract.config import BusSettings, SettingsError
from herald_contract.errors import BusUnavailable
from publisher.publish import Publisher

Publish = Callable[[str, Any], Awaitable[object]]
"""Publish plain data (not yet packed) to a channel, like ``Publisher.publish``."""


async def run_demo(publish: Publish, *, interval_s: float = 1.0) -> None:
    """Publish demo events with *publish* until cancelled; a bus that is down is skipped."""
    score = 0
    next_question = itertools.count(2)
    for tick in itertools.count(1):
        await asyncio.sleep(interval_s)
        score += random.choice((1, 1, 1, -1))
        try:
            await publish(
                "question:1",
                {"type": "score", "post": "question:1", "score": score, "version": tick},
            )
            if tick % 5 == 0:
                qid = next(next_question)
                await publish(
                    "questions:new",
                    {"type": "question", "id": qid, "title": f"Demo question {qid}"},
                )
        except BusUnavailable:
            continue


async def _demo_over_redis(settings: BusSettings, redis_url: str) -> None:
    async with Publisher(
        redis_url,
        prefix=settings.key_prefix,
        history_size=settings.history_size,
        history_ttl_s=settings.history_ttl_s,
        meta_ttl_s=settings.meta_ttl_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
        namespaces=settings.namespaces(),
    ) as publisher:
        demo = asyncio.ensure_future(run_demo(publisher.publish))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        demo.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m launch.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.parse_args(argv)
    try:
        settings = BusSettings.from_env(os.environ)
    except SettingsError as exc:
        print(f"launch.demo: {exc}", file=sys.stderr)
        return 2
    if settings.redis_url is None:
        print("launch.demo: HERALD_REDIS_URL is not set (nothing to publish to)", file=sys.stderr)
        return 2
    asyncio.run(_demo_over_redis(settings, settings.redis_url))
    return 0


if __name__ == "__main__":
    sys.exit(main())
