"""Token buckets: what a connection, and every connection of one client address together,
may spend (docs/protocol.md#limits, docs/security.md).

No I/O and no clock of its own: every method takes the current monotonic time in seconds.
A connection's own buckets live in its :class:`socketsrv.protocol.session.Session`; the
per-address ones in :class:`AddressBudgets`, one per worker, shared by the connections of
an address so that reconnecting does not refill them (issue 11: a flooder that reconnects
after every 4006 got a fresh burst each time).
"""

from __future__ import annotations

from dataclasses import dataclass


class TokenBucket:
    """*burst* tokens at most, refilled at *rate* per second."""

    __slots__ = ("_at", "_level", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._level = burst
        self._at = now

    def level(self, now: float) -> float:
        """Tokens available at *now*."""
        elapsed = now - self._at
        if elapsed > 0:
            self._level = min(self.burst, self._level + elapsed * self.rate)
            self._at = now
        return self._level

    def has(self, n: float, now: float) -> bool:
        return self.level(now) >= n

    def take(self, n: float, now: float) -> bool:
        """Take *n* tokens if there are that many (all or nothing)."""
        if self.level(now) < n:
            return False
        self._level -= n
        return True

    def spend(self, n: float) -> None:
        """Take *n* tokens already checked with :meth:`has` at the same *now*."""
        self._level -= n

    def seconds_until(self, n: float, now: float) -> float:
        """How long until *n* tokens are available (0: now)."""
        missing = n - self.level(now)
        return 0.0 if missing <= 0 else missing / self.rate

    def is_full(self, now: float) -> bool:
        return self.level(now) >= self.burst


@dataclass(frozen=True, slots=True)
class AddressLimits:
    """What one client address may spend on one worker, all its connections together."""

    connections_per_s: float = 10.0
    connections_burst: int = 100
    """New websockets (opening handshakes that would succeed); past it HTTP 429."""
    commands_per_s: float = 200.0
    commands_burst: int = 1000
    """Frames charged like commands (messages, pings, pongs, fragments); past it error 429."""
    replay_bytes_per_s: int = 1024 * 1024
    replay_burst_bytes: int = 16 * 1024 * 1024
    """Bytes replayed by recoveries; past it recovery "failed"."""
    max_addresses: int = 50_000
    """Addresses remembered at most (see :meth:`AddressBudgets.budget`)."""


class AddressBudget:
    """The buckets of one client address."""

    __slots__ = ("commands", "connections", "replay", "replay_refused")

    def __init__(self, limits: AddressLimits, now: float) -> None:
        self.connections = TokenBucket(limits.connections_per_s, limits.connections_burst, now)
        self.commands = TokenBucket(limits.commands_per_s, limits.commands_burst, now)
        self.replay = TokenBucket(limits.replay_bytes_per_s, limits.replay_burst_bytes, now)
        self.replay_refused = 0
        """Bytes of the last replay refused to one of the address's connections (0: the
        last one was taken)."""

    def flooded(self, now: float) -> None:
        """A connection of this address was closed for flooding (4006): the address loses one
        second of new connections, so that reconnecting at once after each 4006 (what a
        flooder does) opens about one connection a second instead of ten."""
        connections = self.connections
        connections.level(now)
        connections.spend(connections.rate)

    def is_full(self, now: float) -> bool:
        """Whether forgetting it would change nothing (every bucket refilled)."""
        return (
            self.connections.is_full(now)
            and self.commands.is_full(now)
            and self.replay.is_full(now)
        )


class AddressBudgets:
    """Per-address budgets of one worker, bounded in memory.

    An address's budget is kept while it is not full, so that closing and reopening
    connections spends from the same buckets. At ``max_addresses`` the full ones are
    forgotten (nothing changes for them); if every remembered address is still spending,
    the oldest half is forgotten: a flood from more addresses than that is bounded by
    ``max_connections`` and the per-connection limits only (docs/security.md).
    """

    __slots__ = ("_budgets", "limits")

    def __init__(self, limits: AddressLimits) -> None:
        self.limits = limits
        self._budgets: dict[str, AddressBudget] = {}

    def __len__(self) -> int:
        return len(self._budgets)

    def budget(self, address: str, now: float) -> AddressBudget:
        budgets = self._budgets
        found = budgets.get(address)
        if found is not None:
            return found
        if len(budgets) >= self.limits.max_addresses:
            self._forget(now)
        created = budgets[address] = AddressBudget(self.limits, now)
        return created

    def _forget(self, now: float) -> None:
        budgets = self._budgets
        for address in [a for a, b in budgets.items() if b.is_full(now)]:
            del budgets[address]
        if len(budgets) >= self.limits.max_addresses:
            for address in list(budgets)[: len(budgets) // 2 + 1]:
                del budgets[address]
