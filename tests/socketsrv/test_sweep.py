"""socketsrv/sweep.py: heartbeats spread over the sweeps, deadlines enforced, on a fake clock.

Connections here are fakes holding a real protocol session; the sweeper is called by hand.
"""

from __future__ import annotations

from typing import Any

from socketsrv.connection import ConnectionState
from socketsrv.metrics import build_metrics
from socketsrv.protocol import frames
from socketsrv.protocol.codes import CloseCode
from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.session import Limits, Session
from socketsrv.sweep import Sweeper

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

    def push(self, frame: bytes) -> None:
        self.pushed.append(frame)

    def close_with(self, code: CloseCode) -> None:
        self.closed_with = code
        self.state = ConnectionState.CLOSING

    @property
    def heartbeats(self) -> int:
        return self.pushed.count(frames.HEARTBEAT[self.wire])


class FakeHub:
    def __init__(self) -> None:
        self.expiries = 0

    def expire_idle(self) -> None:
        self.expiries += 1


class FakeBus:
    live = True


def sweeper(connections: list[FakeConnection], hub: FakeHub | None = None) -> Sweeper:
    fake: Any = connections  # duck-typed ClientConnections
    return Sweeper(
        connections=fake,
        hub=hub or FakeHub(),  # type: ignore[arg-type]
        bus=FakeBus(),  # type: ignore[arg-type]
        metrics=build_metrics(),
        ping_interval_s=PING_S,
        sweep_interval_s=SWEEP_S,
        clock=lambda: 0.0,
    )


def test_each_connection_gets_one_heartbeat_per_half_ping_interval_spread_over_the_sweeps() -> None:
    conns, hub = [FakeConnection(n) for n in range(10)], FakeHub()
    sweep = sweeper(conns, hub)
    for n in range(1, 6):  # half a ping interval: 5 sweeps of 2 connections each
        sweep.sweep(n * SWEEP_S)
        assert sum(c.heartbeats for c in conns) == 2 * n
    assert [c.heartbeats for c in conns] == [1] * 10
    assert hub.expiries == 5


def test_a_connection_past_a_deadline_is_closed_instead_of_pinged() -> None:
    silent = FakeConnection(1, connected=False)  # never said connect
    sweep = sweeper([silent])
    sweep.sweep(LIMITS.connect_timeout_s)
    assert silent.closed_with is None
    sweep.sweep(LIMITS.connect_timeout_s + 0.1)
    assert silent.closed_with is CloseCode.CONNECT_TIMEOUT
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
