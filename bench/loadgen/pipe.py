"""The pipe between the coordinator and a load process, and the load process's main loop.

A command is ``(request_id, name, kwargs)``, answered by ``(request_id, ok, result)`` where
*result* is the command's reply (bench/loadgen/results.py) or, when not *ok*, the error's
text. ``stop`` (or the pipe's end) ends the process: its connections are aborted. Commands
run concurrently: a cheap ``progress`` is answered while an ``open`` is still going.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

from bench.loadgen.process import LoadProcess

Command = tuple[int, str, dict[str, Any]]
Reply = tuple[int, bool, Any]


def start_reader(
    pipe: Connection, loop: asyncio.AbstractEventLoop, handle: Callable[[Any], None]
) -> None:
    """Read whole messages from *pipe* in a thread and hand each to *handle* on *loop*
    (None at EOF). A thread, not ``loop.add_reader``: uvloop makes a watched fd
    non-blocking, and ``Connection.recv`` then fails on a message that is not all there."""

    def read_forever() -> None:
        while True:
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                message = None
            try:
                loop.call_soon_threadsafe(handle, message)
            except RuntimeError:  # the loop is closed
                return
            if message is None:
                return

    threading.Thread(target=read_forever, daemon=True).start()


async def _run(proc: LoadProcess, pipe: Connection, command: Command) -> None:
    request_id, name, args = command
    try:
        handler: Callable[..., Any] = getattr(proc, "cmd_" + name)
        result = handler(**args)
        if asyncio.iscoroutine(result):
            result = await result
        reply: Reply = (request_id, True, result)
    except Exception as exc:  # noqa: BLE001 - reported to the coordinator, which raises it
        reply = (request_id, False, f"{type(exc).__name__}: {exc}")
    pipe.send(reply)


async def serve(proc: LoadProcess, pipe: Connection) -> None:
    """Answer commands from *pipe* until ``stop`` or the coordinator is gone."""
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    pending: set[asyncio.Task[None]] = set()

    def on_command(message: Command | None) -> None:
        if message is None or message[1] == "stop":
            if message is not None:
                pipe.send((message[0], True, None))
            if not stopped.done():
                stopped.set_result(None)
            return
        task = loop.create_task(_run(proc, pipe, message))
        pending.add(task)
        task.add_done_callback(pending.discard)

    start_reader(pipe, loop, on_command)
    await stopped
    for task in pending:
        task.cancel()
    for slot in proc.slots:
        if slot.conn is not None:
            slot.conn.abort()
    await asyncio.sleep(0)


def process_main(
    index: int, sources: Sequence[str], churn_sources: Sequence[str], pipe: Connection
) -> None:
    """Entry point of one load process (multiprocessing "spawn")."""
    import uvloop

    uvloop.run(serve(LoadProcess(index, sources, churn_sources), pipe))
