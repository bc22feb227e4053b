"""Run ``python -m socketsrv`` with a thread that records where the process's memory is.

    python bench/heap_probe.py OUT.jsonl [socketsrv flags...]

Run by path (not ``-m bench...``), so that it also wraps the worker of an older code tree
whose ``bench`` package has no such module (bench/slow_clients.py ``--probe``). Every
``HERALD_HEAP_PROBE_INTERVAL_S`` (default 1 s) a thread appends one JSON line to OUT: the
time, RSS (``/proc/self/status``), ``sys.getallocatedblocks()`` (pymalloc blocks: small
Python objects) and glibc's ``mallinfo2()`` (``arena``: heap bytes from brk/arena heaps,
``uordblks``: of them in use, ``fordblks``: free but kept, ``hblkhd``: bytes in mmapped
chunks, ``keepcost``: what the top of the main heap could give back). RSS well above
``uordblks + hblkhd`` plus the interpreter is memory the allocator keeps, not live objects.

With ``HERALD_HEAP_PROBE_TRACE=1`` tracemalloc runs (slow: diagnostic runs only), and each
time a file ``OUT.snap`` appears the thread takes a snapshot (then deletes it): the first is the
baseline, each later one appends a line with the 25 allocation sites (file:line) that grew
most since the baseline, and the count of gc-tracked objects by type that grew most.

For a fleet of several workers (``python -m socketsrv --workers N`` spawns them, e.g. in
bench/soak.py): run the bench with ``PYTHONPATH=bench/heap_probe_site`` and
``HERALD_HEAP_PROBE_DIR=DIR``; every worker process then writes ``DIR/heap-<pid>.jsonl``
every ``HERALD_HEAP_PROBE_INTERVAL_S`` (default 5 s there), see :func:`start_in_workers`.

Only for benchmarks: nothing here is part of the worker.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)
"""glibc's ``struct mallinfo2``, every field a size_t; ``ordblks`` and ``hblks`` are counts,
the others bytes."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _FIELDS]


def _mallinfo2() -> Any:
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).mallinfo2 if name else None
    except (OSError, AttributeError):
        return None
    if fn is None:
        return None
    fn.restype = _MallInfo2
    fn.argtypes = []
    return fn


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _types() -> Counter[str]:
    return Counter(type(o).__name__ for o in gc.get_objects())


def _probe(out: Path, interval_s: float, trace: bool) -> None:
    mallinfo2 = _mallinfo2()
    snap_file = Path(f"{out}.snap")
    baseline: tracemalloc.Snapshot | None = None
    base_types: Counter[str] = Counter()
    next_at = time.monotonic()
    while True:
        if trace and snap_file.exists():
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            types = _types()
            if baseline is None:
                baseline, base_types = snap, types
                line: dict[str, Any] = {"t": time.time(), "snapshot": "baseline"}
            else:
                stats = snap.compare_to(baseline, "lineno")[:25]
                grown = (types - base_types).most_common(15)
                line = {
                    "t": time.time(),
                    "snapshot": "diff",
                    "traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
                    "sites": [
                        {
                            "where": f"{s.traceback[0].filename}:{s.traceback[0].lineno}",
                            "size_diff_kib": s.size_diff // 1024,
                            "size_kib": s.size // 1024,
                            "count_diff": s.count_diff,
                        }
                        for s in stats
                    ],
                    "types_grown": grown,
                }
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
            snap_file.unlink()  # taken: the bench waits for this
        if time.monotonic() >= next_at:
            next_at += interval_s
            sample: dict[str, Any] = {
                "t": time.time(),
                "rss_kib": _rss_kib(),
                "allocated_blocks": sys.getallocatedblocks(),
            }
            if mallinfo2 is not None:
                mi = mallinfo2()
                sample.update(
                    {
                        f if f in ("ordblks", "hblks") else f"{f}_kib": getattr(mi, f)
                        // (1 if f in ("ordblks", "hblks") else 1024)
                        for f in _FIELDS
                    }
                )
            if trace:
                sample["traced_kib"] = tracemalloc.get_traced_memory()[0] // 1024
            with out.open("a") as f:
                f.write(json.dumps(sample) + "\n")
        time.sleep(0.2)


def start_in_workers(out_dir: Path) -> None:
    """In a process that turns out to be a socket worker (it imports ``socketsrv.worker``),
    record its heap figures to ``out_dir/heap-<pid>.jsonl``; other processes only run a
    thread that looks once a second. Called by bench/heap_probe_site/sitecustomize.py."""
    interval_s = float(os.environ.get("HERALD_HEAP_PROBE_INTERVAL_S", "5"))

    def wait_then_probe() -> None:
        while "socketsrv.worker" not in sys.modules:
            time.sleep(1.0)
        _probe(out_dir / f"heap-{os.getpid()}.jsonl", interval_s, trace=False)

    threading.Thread(target=wait_then_probe, daemon=True).start()


def main() -> None:
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]  # run by path: bench/'s modules must not shadow anything
    out = Path(sys.argv[1])
    interval_s = float(os.environ.get("HERALD_HEAP_PROBE_INTERVAL_S", "1"))
    trace = os.environ.get("HERALD_HEAP_PROBE_TRACE") == "1"
    if trace:
        tracemalloc.start(1)
    threading.Thread(target=_probe, args=(out, interval_s, trace), daemon=True).start()
    sys.argv = ["socketsrv", *sys.argv[2:]]
    runpy.run_module("socketsrv", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
