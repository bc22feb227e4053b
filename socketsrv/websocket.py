"""The websocket layer of one connection, around websockets' sans-I/O ``ServerProtocol``.

What RFC 6455 asks of a server and websockets leaves to it: the answer to the opening
handshake (subprotocol choice, origin check, the worker's own refusals), the assembly of a
message that arrives in fragments, and framing a pre-built frame again when
permessage-deflate is on. Nothing here does I/O; socketsrv/connection.py feeds it.

websockets answers a ping while it parses, before the connection sees the frame, so the
connection's frame budget (docs/protocol.md#limits) is asked from inside the parser: see
:class:`GatedServerProtocol`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Sequence

from websockets.exceptions import InvalidOrigin, NegotiationError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import DATA_OPCODES, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import LoggerLike, Origin, Subprotocol

from socketsrv.protocol.commands import WireFormat
from socketsrv.protocol.opening import BadOpen, is_open_token, open_commands

SUBPROTOCOLS = [Subprotocol(w.subprotocol) for w in WireFormat]


class Refusal(enum.Enum):
    """Why the worker refuses a valid opening handshake (values: metric labels)."""

    DRAINING = "draining"
    CAPACITY = "capacity"
    ADDRESS = "address"
    """The client's address holds ``max_connections_per_address`` on this worker: 429."""
    ADDRESS_RATE = "address_rate"
    """The client's address opened ``address_connections_burst`` websockets lately (a bucket
    refilled at ``address_connections_per_s``): 429 with Retry-After."""
    BUSY = "busy"
    """``handshake_queue`` upgrade requests already wait for a turn (socketsrv/admission.py):
    503 with Retry-After."""


_REFUSAL_ANSWER = {
    Refusal.DRAINING: (503, "Server restarting.\n"),
    Refusal.CAPACITY: (503, "Too many connections on this worker.\n"),
    Refusal.ADDRESS: (429, "Too many connections from this address.\n"),
    Refusal.ADDRESS_RATE: (429, "Too many new connections from this address.\n"),
    Refusal.BUSY: (503, "Too many handshakes waiting on this worker.\n"),
}


FrameGate = Callable[[Frame], bool]
"""Admits one frame that is not a whole message (True) or refuses it (False); it may fail
the connection instead (a flood), which ends the parsing of what was received."""


class GatedServerProtocol(ServerProtocol):
    """websockets' server side, with each frame that is not a whole message put to *gate*.

    Pings, pongs and the fragments of a message (all but its last frame, which completes the
    message and is charged as one) cost the client as much as a command and are what a
    flooder sends: 40,000 pings a second were answered before (issue 11, item 7). A refused
    ping gets no pong and is dropped; a refused pong or fragment is still processed (a
    fragment's data is bounded by ``max_frame_bytes``), and only counts towards the flood.
    """

    gate: FrameGate | None = None
    """Set by the connection once the websocket is open."""

    def recv_frame(self, frame: Frame) -> None:
        gate = self.gate
        opcode = frame.opcode
        # What completes a message is charged as the message (Session.receive); a close
        # frame is the last one.
        ungated = opcode is Opcode.CLOSE or (frame.fin and opcode in DATA_OPCODES)
        if gate is None or ungated or self.state is not State.OPEN:
            super().recv_frame(frame)
            return
        admitted = gate(frame)
        if self.close_sent is not None:
            return  # the gate failed the connection: the rest of the input is discarded
        if admitted or frame.opcode is not Opcode.PING:
            super().recv_frame(frame)


def server_protocol(
    *,
    origins: Sequence[str] | None,
    compression: bool,
    max_frame_bytes: int,
    logger: LoggerLike,
) -> GatedServerProtocol:
    """The sans-I/O server side of one connection, configured as docs/configuration.md says."""
    return GatedServerProtocol(
        # No Origin header means no browser, so no cross-site hijacking to fear.
        origins=[*(Origin(o) for o in origins), None] if origins is not None else None,
        extensions=[ServerPerMessageDeflateFactory()] if compression else None,
        subprotocols=SUBPROTOCOLS,
        select_subprotocol=_select_subprotocol,
        max_size=max_frame_bytes,
        logger=logger,
    )


def answer_handshake(
    ws: ServerProtocol,
    request: Request,
    refusal: Refusal | None,
    retry_after_s: float | None = None,
) -> tuple[Response, str | None]:
    """The response to an opening *request*, and why it was rejected (None for a 101).

    *refusal* is the worker's own reason to refuse (503, or 429 for one address over its
    share), with a Retry-After header when *retry_after_s* is given (whole seconds, at
    least 1); without one, websockets checks the request. The reason is a
    ``herald_handshake_rejections`` label.
    """
    if refusal is not None:
        status, text = _REFUSAL_ANSWER[refusal]
        response = ws.reject(status, text)
        if retry_after_s is not None:
            response.headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
        return response, refusal.value
    response = ws.accept(request)
    if response.status_code == 101:
        return response, None
    exc = ws.handshake_exc
    if isinstance(exc, InvalidOrigin):
        return response, "origin"
    if isinstance(exc, NegotiationError):
        return response, "subprotocol"
    return response, "bad_handshake"


def forget_request(request: Request) -> None:
    """Empty an answered upgrade *request*. websockets' ``ServerProtocol.parse`` keeps it for
    the connection's whole life (a local of its handshake step, whose frame then runs the
    frame parser), and its headers and path were 2.5 KiB of the 8.5 an idle connection cost
    (bench/results/REPORT.md, seventh session). Nothing reads it once it is answered."""
    request.headers.clear()
    request.path = ""


def offered_commands(request: Request) -> list[str] | None:
    """The commands of the request's open token (socketsrv/protocol/opening.py), None when
    it has none; raises :class:`BadOpen`."""
    offered = [
        s.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for s in v.split(",")
    ]
    return open_commands(offered)


def reject_open(ws: ServerProtocol, bad: BadOpen) -> Response:
    """The 400 answer to an upgrade request whose open token the server cannot run."""
    return ws.reject(400, f"Bad open token: {bad.why}.\n")


def wire_of(response: Response) -> WireFormat:
    """The wire format a 101 response agreed on (JSON when no subprotocol was chosen)."""
    subprotocol = response.headers.get("Sec-WebSocket-Protocol")
    return WireFormat(subprotocol) if subprotocol else WireFormat.JSON


def _select_subprotocol(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """The first Herald subprotocol the client offers; JSON when it offers none (an open
    token is not an encoding)."""
    offered = [name for name in offered if not is_open_token(name)]
    if not offered:
        return None
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    raise NegotiationError("expected one of " + ", ".join(SUBPROTOCOLS))


class Fragments:
    """A message arriving in fragments (RFC 6455 section 5.4).

    Made for the first fragment and dropped with the last, so an idle connection holds none.
    The data is appended to one buffer as it comes: what a message in fragments holds is its
    bytes so far (at most ``max_frame_bytes``, which websockets enforces across fragments),
    whatever the number of fragments (300,000 empty ones held 8.7 MB as a list of parts).
    """

    __slots__ = ("data", "text")

    def __init__(self, first: bytes, text: bool) -> None:
        self.data = bytearray(first)
        self.text = text
        """Whether the message is a text message (its first frame was TEXT)."""

    def add(self, data: bytes, fin: bool) -> bytes | None:
        """Add a continuation frame's data; the whole message once *fin* is set, else None."""
        self.data += data
        return bytes(self.data) if fin else None


def reframe(ws: ServerProtocol, frame: bytes) -> bytes:
    """Frame (and compress) again the payload of the complete, unmasked server *frame*.

    With permessage-deflate the frames built once for every subscriber cannot be sent as
    they are: the payload goes through the connection's own compressor.
    """
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    if frame[0] & 0x0F == Opcode.TEXT:
        ws.send_text(frame[start:])
    else:
        ws.send_binary(frame[start:])
    return b"".join(ws.data_to_send())


def close_of(ws: ServerProtocol) -> tuple[int, str]:
    """The close code of a finished connection and who closed: the client's code if it
    closed first, ours if we did, 1006 if no close frame went either way (RFC 6455 7.1.5)."""
    sent, received = ws.close_sent, ws.close_rcvd
    if received is not None and (sent is None or ws.close_rcvd_then_sent):
        return received.code, "by the client"
    if sent is not None:
        return sent.code, "by the server"
    return 1006, "without a close frame"
