"""socketsrv/heap.py: the heap trim is rate-limited, and the worker's periodic sweep requests
one every period until it is cancelled (no real malloc_trim: a counting stand-in); with big
allocations mapped, 32 KiB objects no longer come from the heap (in a child process)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from socketsrv.heap import HeapTrim
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


class CountingTrim:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, pad: int) -> int:
        self.calls += 1
        return 1


async def test_the_sweep_requests_a_trim_every_period_until_cancelled() -> None:
    trim = CountingTrim()
    heap = HeapTrim(min_interval_s=0.01, trim=trim)
    heap.every(0.02)
    heap.every(0.02)  # a second call does not start a second sweep
    await eventually(lambda: trim.calls >= 3)
    heap.cancel()
    assert heap._sweep is None
    assert heap._later is None


async def test_without_malloc_trim_nothing_is_scheduled() -> None:
    heap = HeapTrim(trim=None)
    heap._trim = None  # as on musl or macOS
    heap.every(0.01)
    heap.request()
    assert heap._sweep is None
    assert heap.trims == 0


_MAP_BIG = """
import ctypes, sys
from socketsrv.heap import map_big_allocations

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "on":
    assert map_big_allocations()
before = mallinfo2().hblks
held = [bytes(32 * 1024) for _ in range(200)]
print(mallinfo2().hblks - before)
"""


@pytest.mark.skipif(
    not platform.libc_ver()[0].startswith("glibc"), reason="glibc's mallopt and mallinfo2"
)
def test_32_kib_allocations_get_their_own_mappings_once_big_allocations_are_mapped() -> None:
    """200 live 32 KiB objects: the heap serves them by default (glibc's threshold is
    128 KiB); with the worker's setting most get a mapping, returned when freed."""

    def mapped(setting: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _MAP_BIG, setting],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )  # fmt: skip
        return int(out.stdout)

    assert mapped("off") < 10
    assert mapped("on") > 150
