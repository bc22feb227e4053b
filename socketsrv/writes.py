"""Write scheduling: every connection that queued frames is written once per event-loop turn.

This is the hot path of every delivery (docs/decisions.md): the hub hands a frame to many
connections in one go, each queues it, and at the end of the turn each one writes everything
it queued with a single ``transport.write``. Coalescing the frames of a turn is what keeps
a burst of publications from costing one system call per frame.

The scheduler knows a connection only as a :class:`Writer`: it never looks at what a
connection queued or how it bounds it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from socketsrv.metrics import Metrics

log = logging.getLogger(__name__)


class Writer(Protocol):
    """A connection as the scheduler sees it."""

    def write_queued(self) -> int:
        """Write everything queued since the last call in one ``transport.write``.

        Returns the bytes written: 0 when nothing was queued, when the connection is closing
        (what was queued is dropped), or when the queue passed the connection's bound (the
        connection then closes itself as slow).
        """


class WriteScheduler:
    """Calls :meth:`Writer.write_queued` for each marked writer at the end of the turn."""

    __slots__ = ("_dirty", "_loop", "_metrics")

    def __init__(self, loop: asyncio.AbstractEventLoop, metrics: Metrics) -> None:
        self._loop = loop
        self._metrics = metrics
        self._dirty: list[Writer] = []

    def mark(self, writer: Writer) -> None:
        """*writer* queued its first frame of this turn; a writer is marked once per turn."""
        dirty = self._dirty
        if not dirty:
            self._loop.call_soon(self.flush)
        dirty.append(writer)

    def flush(self) -> None:
        """Write every marked writer now (the end of the turn; tests and benchmarks call it).

        A writer that raises is logged and passed over: the others of the batch are still
        written. (Before, the exception ended the flush, and every writer after it kept what
        it had queued, unwritten and never marked again: deaf until closed 4002.)
        """
        batch, self._dirty = self._dirty, []
        written = 0
        for writer in batch:
            try:
                written += writer.write_queued()
            except Exception:
                log.exception("writing a connection's queued frames failed")
        if written:
            self._metrics.bytes_written.inc(written)
