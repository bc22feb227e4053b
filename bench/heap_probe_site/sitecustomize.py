"""Imported at start-up by every Python process run with ``PYTHONPATH=bench/heap_probe_site``:
with ``HERALD_HEAP_PROBE_DIR`` set, socket workers record their heap figures there
(bench/heap_probe.py, :func:`start_in_workers`). Only for benchmarks."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

_DIR = os.environ.get("HERALD_HEAP_PROBE_DIR")
if _DIR:
    _spec = importlib.util.spec_from_file_location(
        "_herald_heap_probe", Path(__file__).resolve().parents[1] / "heap_probe.py"
    )
    if _spec is not None and _spec.loader is not None:
        _probe = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_probe)
        _probe.start_in_workers(Path(_DIR))
