"""The load side of the soak (bench/soak.py): what a load process does beyond bench/loadgen.

* :class:`SoakAdapter`: Herald's adapter (bench/loadgen/herald.py) that also remembers, per
  client and channel, where it saw a gap in the offsets (a publication lost without a word)
  and where a recovery answered ``failed`` (an explicit loss, docs/protocol.md#recovery),
  and which subscribes the server refused with a code that asks for a retry (429, 500, 503:
  docs/protocol.md#error-codes), each due again after a jittered backoff.
* :class:`SoakProcess`: a load process with four more commands, each bounded in time:
  ``mend`` reconnects (with recovery) every long-lived client whose connection is gone, once
  the ``retry_ms`` hint of the close that ended it has passed (docs/protocol.md#reconnecting),
  and sends a refused subscribe again on its open connection when its backoff is up;
  ``slow`` makes a share of the clients stop reading for a while and resume (slow readers
  coming and going), ``halt`` ends both early, ``account`` classifies every (client,
  channel) against the top offsets the coordinator published.

Before, a refused subscribe was never sent again and a reconnect ignored the hint: the soak of
bench/results/SOAK.md counted 2 (client, channel) pairs "silently short" at clients whose
subscribe had been refused, which was the harness's doing, not the fleet's.
* :class:`SoakGenerator`: the coordinator's side of those commands.
"""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import random
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any, TypedDict

from bench.loadgen.adapters import OP_TEXT, ClientState, Message
from bench.loadgen.client import Client, Slot
from bench.loadgen.connecting import ConnectRound
from bench.loadgen.generator import LoadGenerator
from bench.loadgen.herald import HeraldAdapter, TokenFor
from bench.loadgen.pipe import serve, start_reader
from bench.loadgen.process import LoadProcess
from socketsrv.protocol.codes import retry_hint_s

Top = tuple[str, int]
"""A channel's last publication: (epoch, offset)."""

_MEND_ROUND_S = 20.0
_MEND_PAUSE_S = (0.2, 1.0)
"""A mend round starts after a random pause in this range (clients closed at once do not
all come back in the same instant)."""
_SLOW_TICK_S = 1.0
_RESUBSCRIBE_TICK_S = 0.25

RETRY_SUBSCRIBE_CODES = frozenset({429, 500, 503})
"""Error codes of a refused subscribe that docs/protocol.md#error-codes says to retry."""
_RETRY_BASE_S = 0.5
_RETRY_CAP_S = 10.0
"""A refused subscribe is sent again after random(0, min(cap, base * 2^attempt)) s, the full
jitter docs/protocol.md#reconnecting asks of a reconnect (an error frame has no hint)."""


class SoakAdapter(HeraldAdapter):
    """See the module docstring; the per-client sets are keyed by ``id(state)``."""

    def __init__(self, tokens: TokenFor | None = None) -> None:
        super().__init__(tokens)
        self.gap_channels: dict[int, set[str]] = {}
        self.failed_channels: dict[int, set[str]] = {}
        self.refused: dict[int, tuple[ClientState, dict[int, float]]] = {}
        """Per client: its state, and the index of each refused subscribe on its current
        connection with the time (monotonic) it is due again."""
        self._attempts: dict[int, dict[int, int]] = {}
        self.subscribe_refusals = 0

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        gaps, failed, errors = state.gaps, state.recovery_failed, self.errors
        out = super().on_message(state, opcode, payload, probe)
        if state.gaps != gaps:  # rare: decode the frame only then
            channel = json.loads(payload)["channel"]
            self.gap_channels.setdefault(id(state), set()).add(channel)
        if state.recovery_failed != failed:
            index = json.loads(payload)["id"] - 2
            self.failed_channels.setdefault(id(state), set()).add(state.channels[index])
        if self.errors != errors:
            self._on_error(state, json.loads(payload))
        return out

    def _on_error(self, state: ClientState, frame: dict[str, Any]) -> None:
        """A subscribe refused with a code that asks for a retry is due again later."""
        index = frame.get("id")
        if not isinstance(index, int) or not 0 <= index - 2 < len(state.channels):
            return
        if frame.get("code") not in RETRY_SUBSCRIBE_CODES:
            return
        index -= 2
        self.subscribe_refusals += 1
        attempts = self._attempts.setdefault(id(state), {})
        n = attempts.get(index, 0)
        attempts[index] = n + 1
        wait_s = random.uniform(0, min(_RETRY_CAP_S, _RETRY_BASE_S * 2**n))
        self.refused.setdefault(id(state), (state, {}))[1][index] = time.monotonic() + wait_s

    def due_subscribes(self, now: float) -> list[tuple[ClientState, list[Message]]]:
        """The refused subscribes due by *now*, per client (they leave the refused set)."""
        out: list[tuple[ClientState, list[Message]]] = []
        for key, (state, pending) in list(self.refused.items()):
            due = [index for index, at in pending.items() if at <= now]
            for index in due:
                del pending[index]
            if due:
                out.append((state, [self._subscribe(state, index) for index in due]))
            if not pending:
                del self.refused[key]
        return out

    def _subscribe(self, state: ClientState, index: int) -> Message:
        channel = state.channels[index]
        sub: dict[str, Any] = {"op": "subscribe", "id": 2 + index, "channel": channel}
        position = state.positions.get(channel)
        if position is not None:
            sub["since"] = {"epoch": position[0], "offset": position[1]}
        return (OP_TEXT, json.dumps(sub, separators=(",", ":")).encode())

    def forget(self, state: ClientState) -> None:
        """The client's connection is gone: its reconnect subscribes to everything again."""
        self.refused.pop(id(state), None)
        self._attempts.pop(id(state), None)


class MendReply(TypedDict):
    rounds: int
    attempted: int
    reconnected: int
    hinted: int
    """Reconnects that waited for the ``retry_ms`` hint of the close that ended them."""
    subscribe_refusals: int
    """Subscribes refused with 429, 500 or 503 (each then sent again on its connection)."""
    resubscribed: int


class SlowReply(TypedDict):
    pauses: int
    resumed: int
    paused_at_most: int


class Accounting(TypedDict):
    client_channels: int
    complete: int
    """Every publication since it subscribed received, in order, up to the channel's top."""
    failed_explicit: int
    """Short, but a recovery on that channel answered ``failed``: the client was told."""
    silent_loss: int
    """Short (a gap, or behind the top) and never told: must be 0."""
    silent_gaps: int
    behind_top: int
    silent_at_clients_not_ready: int
    """Of the silent losses, those of clients not connected and ready at the end (still
    reconnecting, or a subscribe refused): short because they are not back yet."""
    duplicates: int
    clients_not_ready: int
    not_ready_no_connection: int
    """Of the clients not ready: their connection is gone (a reconnect is due or running)."""
    not_ready_handshaking: int
    """Connected, upgrade not answered yet."""
    not_ready_retrying_subscribe: int
    """Upgraded, a refused subscribe waiting for its backoff."""
    not_ready_awaiting_reply: int
    """Upgraded, a subscribe sent and not answered."""


def classify(slots: Sequence[Slot], adapter: SoakAdapter, tops: dict[str, Top]) -> Accounting:
    """Every (client, channel) of *slots* against *tops* (see :class:`Accounting`)."""
    counts = dict.fromkeys(
        ("client_channels", "complete", "failed_explicit", "silent_loss", "silent_gaps",
         "behind_top", "silent_at_clients_not_ready", "duplicates", "clients_not_ready",
         "not_ready_no_connection", "not_ready_handshaking", "not_ready_retrying_subscribe",
         "not_ready_awaiting_reply"), 0,
    )  # fmt: skip
    for slot in slots:
        state = slot.state
        gapped = adapter.gap_channels.get(id(state), set())
        failed = adapter.failed_channels.get(id(state), set())
        counts["duplicates"] += state.duplicates
        counts["clients_not_ready"] += not slot.ready
        if not slot.ready:
            counts[_why_not_ready(slot, adapter)] += 1
        for channel in state.channels:
            counts["client_channels"] += 1
            top = tops.get(channel)
            position = state.positions.get(channel)
            behind = top is not None and (
                position is None
                or position[1] < top[1]
                or (position[0] not in ("-", top[0]) and position[1] == top[1])
            )
            if not behind and channel not in gapped:
                counts["complete"] += 1
            elif channel in failed:
                counts["failed_explicit"] += 1
            else:
                counts["silent_loss"] += 1
                counts["silent_gaps"] += channel in gapped
                counts["behind_top"] += behind
                counts["silent_at_clients_not_ready"] += not slot.ready
    return counts  # type: ignore[return-value]  # the keys above are Accounting's


def _why_not_ready(slot: Slot, adapter: SoakAdapter) -> str:
    """The accounting key for where a client that is not ready is stuck."""
    conn = slot.conn
    if conn is None or conn.lost:
        return "not_ready_no_connection"
    if not conn.upgraded:
        return "not_ready_handshaking"
    if id(slot.state) in adapter.refused:
        return "not_ready_retrying_subscribe"
    return "not_ready_awaiting_reply"


class SoakProcess(LoadProcess):
    """A load process with the soak's commands (module docstring)."""

    def __init__(self, index: int, sources: Sequence[str], churn_sources: Sequence[str]) -> None:
        super().__init__(index, sources, churn_sources)
        self._halts = {"mend": asyncio.Event(), "slow": asyncio.Event()}
        self._rng = random.Random(index)
        self._not_before: dict[int, float] = {}
        """Per slot (``id``): when (monotonic) its reconnect may start, from the hint."""
        self._slot_of: dict[int, Slot] = {}
        self.hinted = 0
        self.resubscribed = 0

    def on_lost(self, client: Client) -> None:
        super().on_lost(client)
        slot = client.slot
        if slot.conn is not client:
            return
        if isinstance(self.adapter, SoakAdapter):
            self.adapter.forget(slot.state)
        hint_s = retry_hint_s(client.close_reason)
        if hint_s > 0:
            self._not_before[id(slot)] = time.monotonic() + hint_s
            self.hinted += 1

    def may_reconnect(self, slot: Slot, now: float) -> bool:
        """Whether *slot*'s connection is gone and the hint of its close has passed."""
        return (slot.conn is None or slot.conn.lost) and self._not_before.get(id(slot), 0) <= now

    def resubscribe_due(self, now: float | None = None) -> int:
        """Send every refused subscribe whose backoff is up by *now* (monotonic; None: now)
        on its client's open connection; how many were sent."""
        adapter = self.adapter
        if not isinstance(adapter, SoakAdapter) or not adapter.refused:
            return 0
        if len(self._slot_of) != len(self.slots):
            self._slot_of = {id(slot.state): slot for slot in self.slots}
        sent = 0
        due = adapter.due_subscribes(time.monotonic() if now is None else now)
        for state, messages in due:
            slot = self._slot_of.get(id(state))
            conn = slot.conn if slot is not None else None
            if conn is None or conn.lost or conn.closing or not conn.upgraded:
                continue  # gone meanwhile: its reconnect subscribes again
            conn.send_all(messages)
            sent += len(messages)
        self.resubscribed += sent
        return sent

    async def _resubscribing(self, halt: asyncio.Event, end: float) -> None:
        while not halt.is_set() and time.monotonic() < end:
            self.resubscribe_due()
            await self._pause(_RESUBSCRIBE_TICK_S, halt)

    def cmd_halt(self, command: str) -> None:
        """End the running *command* (``mend`` or ``slow``) early."""
        self._halts[command].set()

    async def _pause(self, seconds: float, halt: asyncio.Event) -> None:
        """Sleep *seconds*, or less when *halt* is set."""
        try:
            async with asyncio.timeout(seconds):
                await halt.wait()
        except TimeoutError:
            pass

    async def cmd_mend(
        self, host: str, port: int, duration_s: float, concurrency: int
    ) -> MendReply:
        """Until halted or *duration_s* passed: reconnect, with recovery, every client whose
        connection is gone (killed worker, 4002, 4007, 4001...) once its close's ``retry_ms``
        hint has passed, in bounded rounds; meanwhile send refused subscribes again."""
        halt = self._halts["mend"]
        halt.clear()
        end = time.monotonic() + duration_s
        rounds = attempted = reconnected = 0
        hinted, resubscribed = self.hinted, self.resubscribed
        refusals = self.adapter.subscribe_refusals if isinstance(self.adapter, SoakAdapter) else 0
        resubscribing = asyncio.ensure_future(self._resubscribing(halt, end))
        try:
            while not halt.is_set() and time.monotonic() < end:
                await self._pause(self._rng.uniform(*_MEND_PAUSE_S), halt)
                now = time.monotonic()
                lost = [s for s in self.slots if self.may_reconnect(s, now)]
                if not lost or halt.is_set():
                    continue
                for slot in lost:
                    slot.state.subscribed = 0
                    self._not_before.pop(id(slot), None)
                rounds += 1
                attempted += len(lost)
                deadline = min(end, time.monotonic() + _MEND_ROUND_S)
                reconnected += await ConnectRound(
                    self, host, port, lost, concurrency=concurrency, deadline=deadline, retry=True
                ).run()
        finally:
            resubscribing.cancel()
            await asyncio.gather(resubscribing, return_exceptions=True)
        if isinstance(self.adapter, SoakAdapter):
            refusals = self.adapter.subscribe_refusals - refusals
        return {
            "rounds": rounds,
            "attempted": attempted,
            "reconnected": reconnected,
            "hinted": self.hinted - hinted,
            "subscribe_refusals": refusals,
            "resubscribed": self.resubscribed - resubscribed,
        }

    async def cmd_slow(
        self, duration_s: float, share: float, pause_s: tuple[float, float]
    ) -> SlowReply:
        """Until halted or *duration_s* passed: keep about *share* of the ready clients not
        reading, each for a random time in *pause_s*; then everyone reads again."""
        loop = asyncio.get_running_loop()
        halt = self._halts["slow"]
        halt.clear()
        end = time.monotonic() + duration_s
        paused: dict[int, Slot] = {}
        counts = {"pauses": 0, "resumed": 0, "paused_at_most": 0}

        def resume(key: int) -> None:
            slot = paused.pop(key, None)
            conn = slot.conn if slot is not None else None
            if conn is not None and conn.transport is not None and not conn.lost:
                conn.transport.resume_reading()
                counts["resumed"] += 1

        while not halt.is_set() and time.monotonic() < end:
            want = int(share * len(self.slots)) - len(paused)
            ready = [s for s in self.slots if s.ready and id(s) not in paused]
            for slot in self._rng.sample(ready, max(0, min(want, len(ready)))):
                conn = slot.conn
                if conn is None or conn.transport is None:
                    continue
                conn.transport.pause_reading()
                paused[id(slot)] = slot
                counts["pauses"] += 1
                loop.call_later(self._rng.uniform(*pause_s), resume, id(slot))
            counts["paused_at_most"] = max(counts["paused_at_most"], len(paused))
            await self._pause(_SLOW_TICK_S, halt)
        for key in list(paused):
            resume(key)
        return counts  # type: ignore[return-value]  # the keys above are SlowReply's

    def cmd_account(self, tops: dict[str, Top]) -> Accounting:
        if not isinstance(self.adapter, SoakAdapter):
            raise TypeError("the account command needs the SoakAdapter")
        return classify(self.slots, self.adapter, tops)


def soak_process_main(
    index: int, sources: Sequence[str], churn_sources: Sequence[str], pipe: Connection
) -> None:
    """Entry point of one soak load process (multiprocessing "spawn")."""
    import uvloop

    uvloop.run(serve(SoakProcess(index, sources, churn_sources), pipe))


def _summed(replies: Sequence[Any]) -> dict[str, int]:
    total: dict[str, int] = {}
    for reply in replies:
        for key, value in reply.items():
            total[key] = total.get(key, 0) + value
    return total


class SoakGenerator(LoadGenerator):
    """:class:`LoadGenerator` whose processes are :class:`SoakProcess` es."""

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ctx = multiprocessing.get_context("spawn")
        for i, source in enumerate(self.sources):
            parent, child = ctx.Pipe()
            churn = [f"127.1.{i}.{j}" for j in range(1, 17)]
            proc = ctx.Process(
                target=soak_process_main, args=(i, [source], churn, child), daemon=True
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._pipes.append(parent)
            start_reader(parent, loop, functools.partial(self._on_reply, i))

    async def mend(self, host: str, port: int, duration_s: float, concurrency: int) -> MendReply:
        per = await self._same(
            "mend", duration_s + _MEND_ROUND_S + 30.0, host=host, port=port,
            duration_s=duration_s, concurrency=max(1, concurrency // self.processes),
        )  # fmt: skip
        return _summed(per)  # type: ignore[return-value]  # MendReply's keys, summed

    async def slow(
        self, duration_s: float, share: float, pause_s: tuple[float, float]
    ) -> SlowReply:
        per = await self._same(
            "slow", duration_s + 30.0, duration_s=duration_s, share=share, pause_s=pause_s
        )
        return _summed(per)  # type: ignore[return-value]  # SlowReply's keys, summed

    async def halt(self, command: str) -> None:
        """End the running ``mend`` or ``slow`` command of every process early."""
        await self._same("halt", 30.0, command=command)

    async def account(self, tops: dict[str, Top]) -> Accounting:
        per = await self._same("account", 60.0, tops=tops)
        return _summed(per)  # type: ignore[return-value]  # Accounting's keys, summed
