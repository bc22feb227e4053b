"""The lifecycle both buses share: one state enum and its guarded transitions.

::

    NEW --start--> LIVE --connection lost--> RECOVERING --resubscribed--> LIVE
     |              |                           |
     +--close-------+---------close-------------+-----------------------> CLOSED

Only a bus with a connection to lose (the Redis bus) ever enters RECOVERING. A transition
the table does not allow raises :class:`herald_contract.errors.BusStateError`, which names
the state: it is a bug in the caller (starting a bus twice), not an outage. Calls that need
a working bus check it with :meth:`BusLifecycle.require`, which raises
:class:`herald_contract.errors.BusUnavailable` instead: outside LIVE the bus is down, and a
caller may retry.
"""

from __future__ import annotations

import enum

from herald_contract.errors import BusStateError, BusUnavailable


class BusState(enum.Enum):
    NEW = "new"
    LIVE = "live"
    RECOVERING = "recovering"
    CLOSED = "closed"


_ALLOWED: dict[BusState, frozenset[BusState]] = {
    BusState.NEW: frozenset({BusState.LIVE, BusState.CLOSED}),
    BusState.LIVE: frozenset({BusState.RECOVERING, BusState.CLOSED}),
    BusState.RECOVERING: frozenset({BusState.LIVE, BusState.CLOSED}),
    BusState.CLOSED: frozenset(),
}


class BusLifecycle:
    """The state of one bus; *name* ("memory", "Redis") appears in error messages."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._state = BusState.NEW

    @property
    def state(self) -> BusState:
        return self._state

    @property
    def live(self) -> bool:
        return self._state is BusState.LIVE

    def expect(self, state: BusState, action: str) -> None:
        """Raise :class:`BusStateError` naming *action* unless the bus is in *state*."""
        if self._state is not state:
            raise BusStateError(action, self._state.value)

    def move(self, to: BusState, action: str) -> None:
        """Enter *to*; raise :class:`BusStateError` naming *action* when the table forbids it."""
        if to not in _ALLOWED[self._state]:
            raise BusStateError(action, self._state.value)
        self._state = to

    def require(self, *states: BusState) -> None:
        """Raise :class:`BusUnavailable` unless the bus is in one of *states*."""
        if self._state not in states:
            raise BusUnavailable(f"the {self._name} bus is {self._state.value}")
