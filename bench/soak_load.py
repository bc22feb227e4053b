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

The accounting also says, for each client not ready at the end, where it stands and how it
got there (:func:`not_ready_detail`: its connection, last close, reconnect attempts, the
``retry_ms`` hint it waits on, its pending subscribes, its position against each channel's
top), because the 10-minute soak counted 3 silent losses at 9 such clients and could not
tell a loss from a client not back yet. A position is compared with the top by its offset
only (:func:`is_behind`): the epoch comparison counted every channel not published to since
the Redis restart "behind" at clients that had subscribed since (same offset, new epoch).
"""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any, NotRequired, TypedDict

from bench.loadgen.adapters import OP_CLOSE, OP_TEXT, ClientState, Message
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
        self.answered: dict[int, set[int]] = {}
        """Per client: the index of each subscribe answered (reply or error) on its current
        connection; the others are pending."""
        self.last_replies: dict[int, dict[str, tuple[str | None, str, int, float]]] = {}
        """Per client and channel: the last subscribe reply (recovery, epoch, offset, when)."""
        self.final_errors: dict[int, dict[int, int]] = {}
        """Per client: the index of each request (-1: the connect) refused on its current
        connection with a code that asks for no retry, and that code."""

    def on_message(
        self, state: ClientState, opcode: int, payload: bytes, probe: bool
    ) -> list[Message]:
        gaps, failed, errors = state.gaps, state.recovery_failed, self.errors
        subscribed = state.subscribed
        out = super().on_message(state, opcode, payload, probe)
        if state.subscribed != subscribed:
            frame = json.loads(payload)
            index = frame["id"] - 2
            self.answered.setdefault(id(state), set()).add(index)
            result = frame["result"]
            self.last_replies.setdefault(id(state), {})[state.channels[index]] = (
                result.get("recovery"),
                result["epoch"],
                result["offset"],
                time.monotonic(),
            )
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
        if not isinstance(index, int) or not 0 <= index - 1 <= len(state.channels):
            return
        index -= 2
        code = frame.get("code")
        if index >= 0:
            self.answered.setdefault(id(state), set()).add(index)
        if code not in RETRY_SUBSCRIBE_CODES or index < 0:
            self.final_errors.setdefault(id(state), {})[index] = (
                code if isinstance(code, int) else 0
            )
            return
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
            answered = self.answered.get(key, set())
            for index in due:
                del pending[index]
                answered.discard(index)  # sent again: pending until its answer
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
        self.answered.pop(id(state), None)
        self.final_errors.pop(id(state), None)


class SoakClient(Client):
    """A :class:`Client` that remembers when it was made and upgraded and the code of the
    server's close frame, for the history of a client that is not ready at the end."""

    __slots__ = ("close_code", "made_at", "upgraded_at")

    def __init__(self, proc: LoadProcess, slot: Slot) -> None:
        super().__init__(proc, slot)
        self.close_code: int | None = None
        self.made_at = time.monotonic()
        self.upgraded_at: float | None = None

    def _upgrade(self, data: bytes) -> bytes | None:
        rest = super()._upgrade(data)
        if self.upgraded and self.upgraded_at is None:
            self.upgraded_at = time.monotonic()
        return rest

    def on_other_frame(self, b0: int, opcode: int, payload: bytes) -> None:
        if opcode == OP_CLOSE and self.close_code is None:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        super().on_other_frame(b0, opcode, payload)


class SoakConnectRound(ConnectRound):
    """:class:`ConnectRound` with :class:`SoakClient` s, each attempt in the slot's history."""

    def _client(self, slot: Slot) -> Client:
        client = SoakClient(self.proc, slot)
        proc = self.proc
        history = proc.history_of(slot) if isinstance(proc, SoakProcess) else None
        if history is not None:
            history.connects += 1
            history.last_connect_at = client.made_at
        return client

    def _connect_failed(self, slot: Slot, reason: str) -> None:
        super()._connect_failed(slot, reason)
        proc = self.proc
        history = proc.history_of(slot) if isinstance(proc, SoakProcess) else None
        if history is not None:
            history.connect_failures += 1
            history.last_connect_error = reason


@dataclass(slots=True)
class History:
    """What happened to one long-lived client's connections since the traffic began (times
    monotonic)."""

    connects: int = 0
    """Connection attempts by the mend (reconnects and their retries)."""
    connect_failures: int = 0
    last_connect_error: str = ""
    last_connect_at: float | None = None
    losses: int = 0
    """Connections lost (closed by the server, reset, or closed by the harness)."""
    last_lost_at: float | None = None
    last_close_code: int | None = None
    """The code of the close frame that came before the last loss (None: none came)."""
    last_close_reason: str = ""
    mend_rounds: int = 0
    """Mend rounds that reconnected it."""
    not_before: float | None = None
    """When its reconnect may start: the ``retry_ms`` hint of the close that ended it."""


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
    failed_then_short: int
    """Of the failed explicitly, those of ready clients: a failed recovery leaves the client
    at the channel's top, so a ready client behind it (or with a gap) after its last failed
    recovery lost something since, without a word: counted silent by the next harness."""
    failed_then_short_samples: list[dict[str, Any]]
    duplicates: int
    clients_not_ready: int
    not_ready_no_connection: int
    """Of the clients not ready: their connection is gone (a reconnect is due or running)."""
    not_ready_handshaking: int
    """Connected, upgrade not answered yet."""
    not_ready_retrying_subscribe: int
    """Upgraded, a refused subscribe waiting for its backoff."""
    not_ready_refused: int
    """Upgraded, the connect or a subscribe refused with a code that asks for no retry."""
    not_ready_awaiting_reply: int
    """Upgraded, a subscribe sent and not answered."""
    not_ready_clients: list[dict[str, Any]]
    """Each client not ready (at most :data:`MAX_NOT_READY_DETAILS` per process): its state
    and history (:func:`not_ready_detail`)."""
    settle_progress: NotRequired[list[tuple[float, int, int]]]
    """Set by bench/soak.py: (seconds into the settle, clients not ready, silent losses)."""


MAX_NOT_READY_DETAILS = 100
_COUNTS = (
    "client_channels", "complete", "failed_explicit", "silent_loss", "silent_gaps",
    "behind_top", "silent_at_clients_not_ready", "duplicates", "clients_not_ready",
    "not_ready_no_connection", "not_ready_handshaking", "not_ready_retrying_subscribe",
    "not_ready_refused", "not_ready_awaiting_reply", "failed_then_short",
)  # fmt: skip


def is_behind(position: Top | None, top: Top | None) -> bool:
    """Whether a client at *position* misses publications up to *top*: it has none of the
    channel, or an offset below the top's.

    The epochs are not compared: the soak's Redis restart keeps its data, so the offsets go
    on in the new epoch, and a channel not published to since the restart has its top in the
    old epoch while a client that subscribed since holds the same offset in the new one. The
    harness before counted that client behind (a false silent loss)."""
    if top is None:
        return False
    return position is None or position[1] < top[1]


def classify(
    slots: Sequence[Slot],
    adapter: SoakAdapter,
    tops: dict[str, Top],
    histories: dict[int, History] | None = None,
    now: float | None = None,
) -> Accounting:
    """Every (client, channel) of *slots* against *tops* (see :class:`Accounting`); each
    client not ready with its state and its history from *histories* (keyed by ``id(slot)``),
    times in seconds before *now* (monotonic; None: now)."""
    counts: dict[str, Any] = dict.fromkeys(_COUNTS, 0)
    details: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    now = time.monotonic() if now is None else now
    for index, slot in enumerate(slots):
        state = slot.state
        gapped = adapter.gap_channels.get(id(state), set())
        failed = adapter.failed_channels.get(id(state), set())
        counts["duplicates"] += state.duplicates
        counts["clients_not_ready"] += not slot.ready
        silent: list[str] = []
        for channel in state.channels:
            counts["client_channels"] += 1
            behind = is_behind(state.positions.get(channel), tops.get(channel))
            if not behind and channel not in gapped:
                counts["complete"] += 1
            elif channel in failed:
                counts["failed_explicit"] += 1
                if slot.ready:
                    counts["failed_then_short"] += 1
                    if len(samples) < MAX_NOT_READY_DETAILS:
                        samples.append(_short_sample(slot, adapter, tops, channel, now))
            else:
                silent.append(channel)
                counts["silent_loss"] += 1
                counts["silent_gaps"] += channel in gapped
                counts["behind_top"] += behind
                counts["silent_at_clients_not_ready"] += not slot.ready
        if not slot.ready:
            why = _why_not_ready(slot, adapter)
            counts[why] += 1
            if len(details) < MAX_NOT_READY_DETAILS:
                history = (histories or {}).get(id(slot), History())
                detail = not_ready_detail(slot, adapter, tops, history, now)
                details.append({"slot": index, "state": why[len("not_ready_") :],
                                "silent_channels": silent, **detail})  # fmt: skip
    counts["not_ready_clients"] = details
    counts["failed_then_short_samples"] = samples
    return counts  # type: ignore[return-value]  # the keys above are Accounting's


def _short_sample(
    slot: Slot, adapter: SoakAdapter, tops: dict[str, Top], channel: str, now: float
) -> dict[str, Any]:
    state = slot.state
    position, top = state.positions.get(channel), tops.get(channel)
    last = adapter.last_replies.get(id(state), {}).get(channel)
    conn = slot.conn
    return {
        "channel": channel,
        "position": list(position) if position else None,
        "top": list(top) if top else None,
        "gap_seen": channel in adapter.gap_channels.get(id(state), set()),
        "last_reply": None if last is None else [*last[:3], _ago(now, last[3])],
        "upgraded_s_ago": _ago(now, getattr(conn, "upgraded_at", None)),
    }


def _ago(now: float, at: float | None) -> float | None:
    return None if at is None else round(now - at, 1)


def not_ready_detail(
    slot: Slot, adapter: SoakAdapter, tops: dict[str, Top], history: History, now: float
) -> dict[str, Any]:
    """Where a client that is not ready stands at *now*: its connection (made, upgraded,
    closing, lost: seconds ago), the last close and loss, its reconnect attempts, the retry
    hint it still waits on, its pending and refused subscribes, and per channel its position
    against the channel's top."""
    state, conn = slot.state, slot.conn
    key = id(state)
    connection: dict[str, Any] | None = None
    if conn is not None:
        connection = {
            "upgraded": conn.upgraded, "closing": conn.closing, "lost": conn.lost,
            "transport": conn.transport is not None,
            "reading": conn.transport is not None and _is_reading(conn.transport),
            "made_s_ago": _ago(now, getattr(conn, "made_at", None)),
            "upgraded_s_ago": _ago(now, getattr(conn, "upgraded_at", None)),
            "close_code": getattr(conn, "close_code", None), "close_reason": conn.close_reason,
        }  # fmt: skip
    answered = adapter.answered.get(key, set())
    refused = adapter.refused.get(key, (state, {}))[1]
    final = adapter.final_errors.get(key, {})
    upgraded = conn is not None and conn.upgraded and not conn.lost
    channels = []
    for i, channel in enumerate(state.channels):
        position, top = state.positions.get(channel), tops.get(channel)
        if i in refused:
            sub = f"refused, due in {refused[i] - now:.1f} s"
        elif i in final:
            sub = f"refused {final[i]}"
        elif i in answered:
            sub = "answered"
        else:
            sub = "pending" if upgraded else "not sent"
        channels.append({
            "channel": channel, "subscribe": sub,
            "position": list(position) if position else None, "top": list(top) if top else None,
            "missing": None if top is None else top[1] - (position[1] if position else 0),
            "behind": is_behind(position, top),
            "gap_seen": channel in adapter.gap_channels.get(key, set()),
            "recovery_failed": channel in adapter.failed_channels.get(key, set()),
        })  # fmt: skip
    hint_wait = history.not_before if conn is None or conn.lost else None
    return {
        "ever_ready": slot.ever_ready,
        "subscribed": state.subscribed,
        "connection": connection,
        "connect_error": final.get(-1),
        "history": {
            **asdict(history),
            "last_connect_at": _ago(now, history.last_connect_at),
            "last_lost_at": _ago(now, history.last_lost_at),
            "not_before": None,
        },
        "waits_for_hint_s": None if hint_wait is None else round(hint_wait - now, 1),
        "channels": channels,
    }


def _is_reading(transport: Any) -> bool | None:
    is_reading = getattr(transport, "is_reading", None)
    return None if is_reading is None else bool(is_reading())


def _why_not_ready(slot: Slot, adapter: SoakAdapter) -> str:
    """The accounting key for where a client that is not ready is stuck."""
    conn = slot.conn
    if conn is None or conn.lost:
        return "not_ready_no_connection"
    if not conn.upgraded:
        return "not_ready_handshaking"
    if id(slot.state) in adapter.refused:
        return "not_ready_retrying_subscribe"
    if adapter.final_errors.get(id(slot.state)):
        return "not_ready_refused"
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
        self.histories: dict[int, History] = {}
        """Per slot (``id``): what happened to its connections (:class:`History`)."""
        self.hinted = 0
        self.resubscribed = 0

    def history_of(self, slot: Slot) -> History:
        history = self.histories.get(id(slot))
        if history is None:
            history = self.histories[id(slot)] = History()
        return history

    def on_lost(self, client: Client) -> None:
        super().on_lost(client)
        slot = client.slot
        if slot.conn is not client:
            return
        if isinstance(self.adapter, SoakAdapter):
            self.adapter.forget(slot.state)
        now = time.monotonic()
        history = self.history_of(slot)
        history.losses += 1
        history.last_lost_at = now
        history.last_close_code = getattr(client, "close_code", None)
        history.last_close_reason = client.close_reason
        history.not_before = None
        hint_s = retry_hint_s(client.close_reason)
        if hint_s > 0:
            self._not_before[id(slot)] = history.not_before = now + hint_s
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
                    history = self.history_of(slot)
                    history.mend_rounds += 1
                    history.not_before = None
                rounds += 1
                attempted += len(lost)
                deadline = min(end, time.monotonic() + _MEND_ROUND_S)
                reconnected += await SoakConnectRound(
                    self,
                    host,
                    port,
                    lost,
                    concurrency=concurrency,
                    deadline=deadline,
                    retry=True,
                    ready_timeout_s=None,  # refused subscribes are sent again on the connection
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
        accounting = classify(self.slots, self.adapter, tops, self.histories)
        for detail in accounting["not_ready_clients"]:
            detail["process"] = self.index
        return accounting


def soak_process_main(
    index: int, sources: Sequence[str], churn_sources: Sequence[str], pipe: Connection
) -> None:
    """Entry point of one soak load process (multiprocessing "spawn")."""
    import uvloop

    uvloop.run(serve(SoakProcess(index, sources, churn_sources), pipe))


def _summed(replies: Sequence[Any]) -> dict[str, Any]:
    """The replies' numbers summed and their lists joined, key by key."""
    total: dict[str, Any] = {}
    for reply in replies:
        for key, value in reply.items():
            total[key] = total.get(key, [] if isinstance(value, list) else 0) + value
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
