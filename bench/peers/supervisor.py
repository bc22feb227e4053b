"""A minimal supervisor for the peer servers: N copies of a server module on one port.

    run_workers("bench.peers.floor", child_args, workers=4)

Each worker is ``python -m <module> *child_args --reuse-port`` (it binds the port itself with
SO_REUSEPORT; the kernel spreads connections over the workers) and prints "ready" once it
serves. The supervisor prints "ready" once every worker did, and returns 0 after SIGTERM or
SIGINT (the workers are stopped), 1 if a worker did not start or exited on its own. Workers
are its children, so whoever measures CPU or memory sums the process tree.

Deliberately not the fleet supervisor of socketsrv/fleet.py, and sharing no code with it:
the peers are what Herald is measured against, so they must not inherit the product's
choices or overhead (Prometheus multiprocess mode, restarting dead workers, drain timeouts),
and no change to the product may move the floor. It does only what a measurement needs: a
worker that dies ends the run rather than being restarted behind the measurement's back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from asyncio.subprocess import Process
from collections.abc import Sequence
from typing import Any

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The options every peer server takes (the supervisor sets ``--reuse-port``)."""
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis-url", required=True)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--reuse-port", action="store_true", help="(set by the supervisor)")
    return p


def run_workers(module: str, child_args: Sequence[str], workers: int) -> int:
    """Run *workers* copies of *module* until a signal; see the module docstring."""
    return asyncio.run(_supervise(module, child_args, workers))


async def _supervise(module: str, child_args: Sequence[str], workers: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    procs: list[Process] = []
    waits: list[asyncio.Future[Any]] = []
    try:
        for index in range(workers):
            env = {**os.environ, "BENCH_WORKER_INDEX": str(index), "BENCH_WORKERS": str(workers)}
            procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, "-m", module, *child_args, "--reuse-port",
                    stdout=asyncio.subprocess.PIPE, env=env,
                )
            )  # fmt: skip
        stopped = asyncio.ensure_future(stop.wait())
        exited = [asyncio.ensure_future(p.wait()) for p in procs]
        ready = asyncio.ensure_future(asyncio.gather(*(_ready(p) for p in procs)))
        waits += [stopped, ready, *exited]
        await asyncio.wait(waits, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return 0
        if not ready.done() or not all(ready.result()):
            print("a worker did not start", file=sys.stderr, flush=True)
            return 1
        print("ready", flush=True)
        running: list[asyncio.Future[Any]] = [stopped, *exited]
        await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            return 0
        print("a worker exited", file=sys.stderr, flush=True)
        return 1
    finally:
        for waiting in waits:
            waiting.cancel()
        await _stop(procs)


async def _ready(proc: Process) -> bool:
    """Whether *proc* printed "ready" before its stdout ended."""
    assert proc.stdout is not None
    while line := await proc.stdout.readline():
        if b"ready" in line:
            return True
    return False


async def _stop(procs: Sequence[Process]) -> None:
    """SIGTERM every worker still running; SIGKILL what is left after STOP_TIMEOUT_S."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    if not procs:
        return
    waits = asyncio.gather(*(p.wait() for p in procs))
    try:
        await asyncio.wait_for(waits, STOP_TIMEOUT_S)
    except TimeoutError:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        await asyncio.gather(*(p.wait() for p in procs))
