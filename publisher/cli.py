"""``herald-publish``: publish one event from a shell (also ``python -m publisher``).

    herald-publish question:42 '{"score": 7}'
    echo '{"score": 7}' | herald-publish question:42 - --event-id vote:991

Prints ``{"channel", "epoch", "offset", "duplicate"}`` as JSON. Exit codes: 0 published
(or a duplicate of an earlier publish), 2 invalid arguments (channel, JSON, payload, event
id, a setting), 1 Redis unreachable or refusing.

It publishes as the fleet expects because it reads the settings every publisher shares
(docs/configuration.md, "Settings shared with every publisher"), under the same names:
``HERALD_REDIS_URL`` (alias ``REDIS_URL``), ``HERALD_KEY_PREFIX``, ``HERALD_HISTORY_SIZE``,
``HERALD_HISTORY_TTL_S``, ``HERALD_META_TTL_S``, ``HERALD_IDEMPOTENCY_TTL_S`` and
``HERALD_NAMESPACES_FILE`` (docs/namespaces.md); ``--redis-url`` and ``--prefix`` win over
them. :func:`main` is the only place the environment is read.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from herald_contract.errors import InvalidChannel, InvalidPayload, PublishFailed
from herald_contract.history import HistorySettings
from herald_contract.keys import DEFAULT_PREFIX
from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import NamespaceFileError, load_namespaces
from herald_contract.stream import PublishResult
from publisher.publish import Publisher

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE = 0, 1, 2

REDIS_URL_ENV = ("HERALD_REDIS_URL", "REDIS_URL")
KEY_PREFIX_ENV = "HERALD_KEY_PREFIX"
NAMESPACES_FILE_ENV = "HERALD_NAMESPACES_FILE"
HISTORY_ENV = {
    "history_size": "HERALD_HISTORY_SIZE",
    "history_ttl_s": "HERALD_HISTORY_TTL_S",
    "meta_ttl_s": "HERALD_META_TTL_S",
    "idempotency_ttl_s": "HERALD_IDEMPOTENCY_TTL_S",
}
"""HistorySettings field -> the shared variable it is read from."""


class SettingError(ValueError):
    """A shared setting in the environment that cannot work; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where and how to publish: the Redis URL, the key prefix, the history retention, the
    namespaces."""

    redis_url: str
    prefix: str
    history: HistorySettings
    namespaces: Namespaces | None = None
    """None: the shipped file's."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="herald-publish",
        description="Publish one event to a Herald channel.",
        epilog="The shared settings HERALD_KEY_PREFIX, HERALD_HISTORY_SIZE, HERALD_HISTORY_TTL_S,"
        " HERALD_META_TTL_S, HERALD_IDEMPOTENCY_TTL_S and HERALD_NAMESPACES_FILE are read from"
        " the environment.",
    )
    parser.add_argument("channel", help="e.g. question:42, questions:new, tag:python, user:7")
    parser.add_argument("data", help="the event as JSON, or - to read it from stdin")
    parser.add_argument(
        "--redis-url",
        help=f"default: $HERALD_REDIS_URL, else $REDIS_URL, else {DEFAULT_REDIS_URL}",
        default=None,
    )
    parser.add_argument("--event-id", default="", help="idempotency key (1-128 of A-Za-z0-9_.:-)")
    parser.add_argument(
        "--prefix",
        default=None,
        help=f"Redis key prefix (default: $HERALD_KEY_PREFIX, else {DEFAULT_PREFIX})",
    )
    return parser


def target_from(args: argparse.Namespace, env: Mapping[str, str]) -> Target:
    """The flags, then the shared variables of *env*, then the defaults; or SettingError."""
    redis_url = args.redis_url or _first(env, REDIS_URL_ENV) or DEFAULT_REDIS_URL
    prefix = args.prefix or env.get(KEY_PREFIX_ENV) or DEFAULT_PREFIX
    values: dict[str, Any] = {}
    for field, name in HISTORY_ENV.items():
        raw = env.get(name)
        if not raw:
            continue
        values[field] = _number(name, raw, whole=field == "history_size")
        try:
            replace(HistorySettings(), **{field: values[field]})  # the contract's rule for it
        except ValueError as exc:
            raise SettingError(f"{name}: {exc}") from None
    try:
        namespaces = load_namespaces(env.get(NAMESPACES_FILE_ENV) or None)
    except NamespaceFileError as exc:
        raise SettingError(f"{NAMESPACES_FILE_ENV}: {exc}") from None
    return Target(redis_url, prefix, replace(HistorySettings(), **values), namespaces)


def _first(env: Mapping[str, str], names: Sequence[str]) -> str | None:
    return next((env[name] for name in names if env.get(name)), None)


def _number(name: str, raw: str, *, whole: bool) -> float:
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise SettingError(f"{name}: cannot read {raw!r} as {kind}") from None
    if not math.isfinite(value):
        raise SettingError(f"{name}: {raw!r} is not a finite number")
    return value


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidPayload(f"not valid JSON ({exc})") from None


async def _publish(args: argparse.Namespace, target: Target, data: Any) -> PublishResult:
    history = target.history
    async with Publisher(
        target.redis_url,
        prefix=target.prefix,
        history_size=history.history_size,
        history_ttl_s=history.history_ttl_s,
        meta_ttl_s=history.meta_ttl_s,
        idempotency_ttl_s=history.idempotency_ttl_s,
        namespaces=target.namespaces,
    ) as publisher:
        return await publisher.publish(args.channel, data, event_id=args.event_id)


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Run the command; return the exit code (see the module docstring).

    *env* is the environment to read the shared settings from (``os.environ`` when None).
    """
    args = build_parser().parse_args(argv)
    try:
        target = target_from(args, os.environ if env is None else env)
    except SettingError as exc:
        print(f"herald-publish: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        text = sys.stdin.read() if args.data == "-" else args.data
        result = asyncio.run(_publish(args, target, _parse_json(text)))
    except (InvalidChannel, InvalidPayload) as exc:
        print(f"herald-publish: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        # What is left is redis-py refusing the URL.
        print(f"herald-publish: invalid Redis URL {target.redis_url!r}: {exc}", file=sys.stderr)
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
