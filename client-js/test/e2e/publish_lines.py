"""Redis and the publisher for the browser tests, in one long-lived process.

Starts a redis-server in the directory given as the only argument, with the project's shared
launcher (:class:`tests.support.redis_server.RedisServer`), and prints one JSON line
``{"redis_url": ...}``. Then, for each stdin line, prints one JSON line:

- ``{"channel": ..., "data": ...}``: published through the real ``publisher.Publisher``;
  answers ``{"epoch": ..., "offset": ...}`` or ``{"error": ...}``;
- ``{"op": "restart_redis"}``: Redis restarted on the same port without its data (history
  and epochs lost, as after a crash); answers ``{"restarted": true}``.

At the end of stdin the server is stopped. Run it with the project's interpreter, the
repository root on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from herald_contract.errors import PublishFailed
from publisher.publish import Publisher
from tests.support.redis_server import RedisServer


def say(answer: dict[str, Any]) -> None:
    print(json.dumps(answer), flush=True)


async def serve(server: RedisServer) -> None:
    loop = asyncio.get_running_loop()
    async with Publisher(server.url) as publisher:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            request = json.loads(line)
            if request.get("op") == "restart_redis":
                await asyncio.to_thread(server.restart, keep_data=False)
                say({"restarted": True})
                continue
            try:
                result = await publisher.publish(request["channel"], request["data"])
                say({"epoch": result.position.epoch, "offset": result.position.offset})
            except PublishFailed as exc:
                say({"error": str(exc)})


def main(workdir: Path) -> None:
    server = RedisServer.launch(workdir)
    try:
        say({"redis_url": server.url})
        asyncio.run(serve(server))
    finally:
        server.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
