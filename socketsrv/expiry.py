"""Token expiries of a worker's connections, in deadline order (docs/protocol.md#tokens).

The sweep visits each connection only about twice per ``ping_interval_s`` (socketsrv/sweep.py),
too seldom to close an expired token on time; this queue lets every sweep take exactly the
connections whose token has run out, at a cost of O(log n) per token (issue 12, item 8: a
token was closed 5.2-6.5 s after ``expires_at``, and with the sweep spread properly it would
have been up to half an interval later still).

A connection is tracked when its session's deadline changes (connect, refresh) and forgotten
when it closes. The heap holds only (deadline, key) pairs, so a closed connection is never kept
alive by it; a stale pair (a refresh moved the deadline, or the connection left) is dropped
when it comes due.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

T = TypeVar("T")


class ExpiryQueue(Generic[T]):
    """Items with a deadline each; :meth:`due` takes those whose deadline has passed."""

    __slots__ = ("_deadlines", "_heap", "_items")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._deadlines: dict[int, float] = {}
        self._items: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._items)

    def track(self, item: T, deadline: float | None) -> None:
        """*item*'s deadline is now *deadline* (None: it has none any more)."""
        key = id(item)
        if deadline is None:
            self.forget(item)
            return
        if self._deadlines.get(key) == deadline:
            return
        self._deadlines[key] = deadline
        self._items[key] = item
        heapq.heappush(self._heap, (deadline, key))

    def forget(self, item: T) -> None:
        key = id(item)
        self._deadlines.pop(key, None)
        self._items.pop(key, None)

    def due(self, now: float) -> list[T]:
        """Remove and return the items whose deadline is at or before *now*, earliest first."""
        heap, deadlines, out = self._heap, self._deadlines, []
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            if deadlines.get(key) == deadline:  # else stale: moved, or forgotten
                del deadlines[key]
                out.append(self._items.pop(key))
        return out
