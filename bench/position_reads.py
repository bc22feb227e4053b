"""The cost of a position check's read, side by side: ``Bus.positions`` (a pipelined
``HMGET meta epoch top`` per channel) against what it replaced, ``lua/history.lua`` read for
its position only (a pipelined ``EVALSHA`` per channel, each running ``INFO replication``).

    .venv/bin/python -m bench.position_reads [--channels 20000] [--published 0.3]
        [--rounds 5] [--output bench/results/position-reads.json]

One redis-server of its own; ``--published`` of the channels have publications, the rest
none (a storm's inbox channels mostly). Each round reads every channel once both ways, in
batches of :data:`socketsrv.history.PIPELINE_READS` as the checker does, the two in turn
(which goes first alternates). Measured: the reading process's CPU per channel (what the
worker pays) and Redis's CPU per channel (what the shared server pays), medians with min
and max over the rounds, and the ratio new/old round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import measure
from herald_contract.history import HistorySettings
from herald_contract.keys import KeyLayout
from herald_contract.redis_scripts import PublishScripts, command_client
from herald_contract.stream import HistoryRead
from socketsrv.history import PIPELINE_READS
from tests.support.redis_server import RedisServer

KEYS = KeyLayout("bench")


async def _seed(scripts: PublishScripts, channels: list[str], published: float) -> None:
    count = int(len(channels) * published)
    for start in range(0, count, 500):
        await asyncio.gather(
            *(scripts.publish(ch, b"\xa1x") for ch in channels[start : min(count, start + 500)])
        )


async def _timed(
    read: Callable[[list[str]], Awaitable[Any]], channels: list[str], server: int
) -> tuple[float, float]:
    """(this process's CPU, Redis's CPU) in microseconds per channel for one full read."""
    mine, theirs = time.process_time(), measure.cpu_s(server)
    for start in range(0, len(channels), PIPELINE_READS):
        await read(channels[start : start + PIPELINE_READS])
    per = 1e6 / len(channels)
    return (time.process_time() - mine) * per, (measure.cpu_s(server) - theirs) * per


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as workdir:
        redis = RedisServer.launch(Path(workdir) / "redis")
        client = command_client(redis.url, socket_timeout_s=10)
        try:
            scripts = PublishScripts(client, KEYS, HistorySettings())
            channels = [f"inbox:{n}" for n in range(args.channels)]
            await _seed(scripts, channels, args.published)
            assert redis.pid is not None
            server = redis.pid

            async def old(batch: list[str]) -> Any:
                return await scripts.history_many([HistoryRead(ch, None, 0) for ch in batch])

            async def new(batch: list[str]) -> Any:
                return await scripts.positions(batch)

            assert [r.position for r in await old(channels[:500])] == await new(channels[:500])
            rows: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
            for n in range(args.rounds):
                order = [("old", old), ("new", new)]
                for name, read in order if n % 2 == 0 else order[::-1]:
                    rows[name].append(await _timed(read, channels, server))
        finally:
            await client.aclose()
            redis.close()
    result: dict[str, Any] = {
        "channels": args.channels,
        "published": args.published,
        "rounds": args.rounds,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    for side, index in (("reader_us_per_channel", 0), ("redis_us_per_channel", 1)):
        result[side] = {name: _spread([r[index] for r in rows[name]]) for name in rows}
        result[side]["new_over_old"] = _spread(
            [new[index] / old[index] for old, new in zip(rows["old"], rows["new"], strict=True)]
        )
    return result


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=20_000)
    parser.add_argument("--published", type=float, default=0.3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _parse()
    measure.emit(asyncio.run(main(arguments)), arguments.output)
