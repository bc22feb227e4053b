"""socketsrv/sweep.py: heartbeats spread over the sweeps, deadlines enforced, on a fake clock.

Connections here are fakes holding a real protocol session; the sweeper is called by hand.
"""

from __future__ import annotations

from typing import Any

from socketsrv.connection import ConnectionState
from socketsrv.expiry import ExpiryQueue
from socketsrv.metrics import Metrics, build_metrics
from socketsrv.protocol import frames
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import Limits, Session
from socketsrv.sweep import VISIT_TICKS, Sweeper

PING_S, SWEEP_S = 1.0, 0.1
LIMITS = Limits(ping_interval_s=PING_S, pong_timeout_s=0.5, connect_timeout_s=2.0)


class FakeConnection:
    def __init__(self, number: int, *, connected: bool = True) -> None:
        self.wire = WireFormat.JSON
        self.state = ConnectionState.OPEN
        self.session = Session(
            client_id=str(number), wire=self.wire, limits=LIMITS, verifier=None, now=0.0
        )
        if connected:
            self.session.receive('{"op":"connect","id":1}', 0.0)
        self.pushed: list[bytes] = []
        self.closed_with: CloseCode | None = None
        self.reading = False
        """Whether the client reads its way toward an unanswered heartbeat (a backlog)."""

    def push(self, frame: bytes) -> None:
        self.pushed.append(frame)

    def send_heartbeat(self, frame: bytes) -> None:
        self.pushed.append(frame)

    def reading_toward_heartbeat(self) -> bool:
        return self.reading

    def close_with(self, code: CloseCode) -> None:
        self.closed_with = code
        self.state = ConnectionState.CLOSING

    @property
    def heartbeats(self) -> int:
        return self.pushed.count(frames.HEARTBEAT[self.wire])


def closed_with(conn: FakeConnection) -> CloseCode | None:
    return conn.closed_with


class FakeHub:
    def __init__(self) -> None:
        self.expiries = 0

    def expire_idle(self) -> None:
        self.expiries += 1


class FakeBus:
    live = True


def sweeper(
    connections: list[FakeConnection],
    hub: FakeHub | None = None,
    *,
    ping_interval_s: float = PING_S,
    sweep_interval_s: float = SWEEP_S,
    expiries: ExpiryQueue[Any] | None = None,
    metrics: Metrics | None = None,
) -> Sweeper:
    fake: Any = connections  # duck-typed ClientConnections
    return Sweeper(
        connections=fake,
        hub=hub or FakeHub(),  # type: ignore[arg-type]
        bus=FakeBus(),  # type: ignore[arg-type]
        metrics=metrics or build_metrics(),
        ping_interval_s=ping_interval_s,
        sweep_interval_s=sweep_interval_s,
        clock=lambda: 0.0,
        expiries=expiries,
    )


def sweep_for(sweep: Sweeper, conns: list[FakeConnection], seconds: float) -> None:
    """Sweep every SWEEP_S for *seconds*; every client answers each heartbeat at once."""
    for n in range(1, round(seconds / SWEEP_S) + 1):
        now = n * SWEEP_S
        sweep.sweep(now)
        for conn in conns:
            if conn.session.heartbeat_due() is False and conn.state is ConnectionState.OPEN:
                conn.session.receive('{"op":"pong"}', now + 0.001)


def test_each_connection_gets_one_heartbeat_per_half_ping_interval_spread_over_the_sweeps() -> None:
    conns, hub = [FakeConnection(n) for n in range(10)], FakeHub()
    sweep = sweeper(conns, hub)
    for n in range(1, 6):  # half a ping interval: 5 sweeps of 2 connections each
        sweep.sweep(n * SWEEP_S)
        assert sum(c.heartbeats for c in conns) == 2 * n
    assert [c.heartbeats for c in conns] == [1] * 10
    assert hub.expiries == 5


def test_the_visits_between_two_sweeps_take_the_next_sweeps_share_a_tenth_at_a_time() -> None:
    conns, hub = [FakeConnection(n) for n in range(100)], FakeHub()
    sweep = sweeper(conns, hub)  # 5 sweeps per cycle: 20 connections each
    sweep.visit(SWEEP_S / VISIT_TICKS)  # the first cycle starts at the first sweep, not before
    assert sum(c.heartbeats for c in conns) == 0
    sweep.sweep(SWEEP_S)
    assert [c.heartbeats for c in conns] == [1] * 20 + [0] * 80
    for tick in range(1, VISIT_TICKS):
        sweep.visit(SWEEP_S + tick * SWEEP_S / VISIT_TICKS)
        assert sum(c.heartbeats for c in conns) == 20 + 2 * tick
    sweep.sweep(2 * SWEEP_S)  # the sweep visits what is left of its share, and only that
    assert [c.heartbeats for c in conns] == [1] * 40 + [0] * 60
    assert hub.expiries == 2


def test_a_connection_past_a_deadline_is_closed_instead_of_pinged() -> None:
    silent = FakeConnection(1, connected=False)  # never said connect
    sweep = sweeper([silent])
    sweep.sweep(LIMITS.connect_timeout_s)
    assert closed_with(silent) is None
    sweep.sweep(LIMITS.connect_timeout_s + PING_S / 2)  # its next visit: the next cycle
    assert closed_with(silent) is CloseCode.CONNECT_TIMEOUT
    assert silent.pushed == []


def test_an_unanswered_heartbeat_closes_with_no_pong_and_closing_connections_are_skipped() -> None:
    deaf, leaving = FakeConnection(1), FakeConnection(2)
    leaving.state = ConnectionState.CLOSING
    sweep = sweeper([deaf, leaving])
    sweep.sweep(0.0)  # one connection per sweep here: the deaf one first
    sweep.sweep(0.1)
    assert (deaf.heartbeats, leaving.heartbeats) == (1, 0)
    sweep.sweep(0.6)  # past pong_timeout_s with nothing from the client
    assert deaf.closed_with is CloseCode.NO_PONG
    assert leaving.closed_with is None


def test_a_client_reading_toward_its_heartbeat_gets_more_time_and_is_closed_once_it_stops() -> None:
    slow = FakeConnection(1)
    metrics = build_metrics()
    sweep = sweeper([slow], metrics=metrics)
    sweep.sweep(0.0)
    assert slow.heartbeats == 1
    slow.reading = True  # a backlog ahead of the heartbeat, and its TCP acknowledges more
    sweep.sweep(0.6)  # its next visit, past pong_timeout_s
    assert slow.closed_with is None
    assert metrics.registry.get_sample_value("herald_heartbeats_delayed_total") == 1
    assert slow.heartbeats == 1  # no second heartbeat while the first is unanswered
    slow.reading = False  # stopped reading: the deadline runs again from the last visit
    sweep.sweep(1.2)  # the next visit, pong_timeout_s after that one
    assert slow.closed_with is CloseCode.NO_PONG


# Issue 12, item 8: the heartbeat rate does not depend on how few connections there are, and
# an expired token is closed within a sweep of expires_at plus the leeway


def test_with_few_connections_each_hears_about_two_heartbeats_per_ping_interval() -> None:
    for count in (1, 3):
        conns = [FakeConnection(n) for n in range(count)]
        sweep_for(sweeper(conns), conns, 10 * PING_S)
        assert [c.heartbeats for c in conns] == [20] * count, count  # not one per sweep


def test_with_many_connections_each_hears_about_two_heartbeats_per_ping_interval() -> None:
    conns = [FakeConnection(n) for n in range(23)]
    sweep_for(sweeper(conns), conns, 10 * PING_S)
    assert [c.heartbeats for c in conns] == [20] * 23


def test_a_connection_that_arrives_mid_cycle_is_visited_in_the_next_cycle() -> None:
    first = FakeConnection(1)
    conns = [first]
    sweep = sweeper(conns)
    sweep.sweep(0.0)
    late = FakeConnection(2)
    conns.append(late)
    sweep.sweep(SWEEP_S)
    assert late.heartbeats == 0
    sweep.sweep(PING_S / 2)  # the next cycle: one connection per sweep, the first one first
    sweep.sweep(PING_S / 2 + SWEEP_S)
    assert (first.heartbeats, late.heartbeats) == (1, 1)


def test_an_expired_token_is_closed_at_the_first_sweep_past_its_deadline_not_at_its_visit() -> None:
    conns = [FakeConnection(n) for n in range(30)]
    expiries: ExpiryQueue[Any] = ExpiryQueue()
    holder = conns[0]  # visited in the first sweep of a cycle: its next visit is 12 s later
    expiries.track(holder, 3.5)
    sweep = sweeper(conns, ping_interval_s=25.0, sweep_interval_s=1.0, expiries=expiries)
    for now in (0.0, 1.0, 2.0, 3.0):
        sweep.sweep(now)
    assert closed_with(holder) is None
    sweep.sweep(4.0)
    assert closed_with(holder) is CloseCode.TOKEN_EXPIRED
    assert [c.closed_with for c in conns[1:]] == [None] * 29


def test_a_moved_or_forgotten_expiry_closes_nobody_at_the_old_deadline() -> None:
    refreshed, gone = FakeConnection(1), FakeConnection(2)
    expiries: ExpiryQueue[Any] = ExpiryQueue()
    expiries.track(refreshed, 1.0)
    expiries.track(gone, 1.0)
    expiries.track(refreshed, 100.0)  # a refresh
    expiries.forget(gone)  # closed meanwhile
    assert expiries.due(50.0) == []
    assert len(expiries) == 1
    assert expiries.due(100.0) == [refreshed]
    assert len(expiries) == 0


def test_expiries_come_due_in_deadline_order_and_a_cleared_deadline_is_forgotten() -> None:
    a, b, c = FakeConnection(1), FakeConnection(2), FakeConnection(3)
    expiries: ExpiryQueue[Any] = ExpiryQueue()
    expiries.track(b, 2.0)
    expiries.track(a, 1.0)
    expiries.track(c, 3.0)
    expiries.track(c, None)
    assert expiries.due(10.0) == [a, b]


def test_a_closing_connection_with_an_expired_token_is_not_closed_again() -> None:
    leaving = FakeConnection(1)
    leaving.state = ConnectionState.CLOSING
    expiries: ExpiryQueue[Any] = ExpiryQueue()
    expiries.track(leaving, 1.0)
    sweeper([leaving], expiries=expiries).sweep(2.0)
    assert leaving.closed_with is None
