"""Publish one event per stdin line (JSON ``{"channel": ..., "data": ...}``) through the real
``publisher.Publisher``; print one JSON result (or error) line per input line.

Used by the browser tests: one long-lived process instead of a ``herald-publish`` start-up per
publication. Run it with the project's interpreter, cwd at the repository root.
"""

from __future__ import annotations

import asyncio
import json
import sys

from herald_contract.errors import PublishFailed
from publisher.publish import Publisher


async def main(redis_url: str) -> None:
    loop = asyncio.get_running_loop()
    async with Publisher(redis_url) as publisher:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            request = json.loads(line)
            try:
                result = await publisher.publish(request["channel"], request["data"])
                answer = {"epoch": result.position.epoch, "offset": result.position.offset}
            except PublishFailed as exc:
                answer = {"error": str(exc)}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
