"""``herald-publish``: publish one event from a shell (also ``python -m publisher``).

    herald-publish question:42 '{"score": 7}'
    echo '{"score": 7}' | herald-publish question:42 - --event-id vote:991

Prints ``{"channel", "epoch", "offset", "duplicate"}`` as JSON. Exit codes: 0 published
(or a duplicate of an earlier publish), 2 invalid arguments (channel, JSON, payload, event
id), 1 Redis unreachable or refusing. ``REDIS_URL`` is read here and nowhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from herald_contract.errors import InvalidChannel, InvalidPayload, PublishFailed
from herald_contract.keys import DEFAULT_PREFIX
from herald_contract.stream import PublishResult
from publisher.publish import Publisher

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herald-publish", description="Publish one event to a Herald channel."
    )
    parser.add_argument("channel", help="e.g. question:42, questions:new, tag:python, user:7")
    parser.add_argument("data", help="the event as JSON, or - to read it from stdin")
    parser.add_argument(
        "--redis-url", help=f"default: $REDIS_URL, else {DEFAULT_REDIS_URL}", default=None
    )
    parser.add_argument("--event-id", default="", help="idempotency key (1-128 of A-Za-z0-9_.:-)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="Redis key prefix")
    return parser


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"not valid JSON ({exc})") from None


async def _publish(args: argparse.Namespace, redis_url: str, data: Any) -> PublishResult:
    async with Publisher(redis_url, prefix=args.prefix) as publisher:
        return await publisher.publish(args.channel, data, event_id=args.event_id)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return the exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    redis_url = args.redis_url or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    try:
        text = sys.stdin.read() if args.data == "-" else args.data
        result = asyncio.run(_publish(args, redis_url, _parse_json(text)))
    except (InvalidChannel, InvalidPayload) as exc:
        print(f"herald-publish: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        # What is left is redis-py refusing the URL.
        print(f"herald-publish: invalid Redis URL {redis_url!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PublishFailed as exc:
        print(f"herald-publish: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    position = result.position
    summary = {
        "channel": args.channel,
        "epoch": position.epoch,
        "offset": position.offset,
        "duplicate": result.duplicate,
    }
    print(json.dumps(summary))
    return EXIT_OK
