"""The websocket layer of one connection, around websockets' sans-I/O ``ServerProtocol``.

What RFC 6455 asks of a server and websockets leaves to it: the answer to the opening
handshake (subprotocol choice, origin check, the worker's own refusals), the assembly of a
message that arrives in fragments, and framing a pre-built frame again when
permessage-deflate is on. Nothing here does I/O; socketsrv/connection.py feeds it.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from websockets.exceptions import InvalidOrigin, NegotiationError
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import LoggerLike, Origin, Subprotocol

from socketsrv.protocol.commands import WireFormat

SUBPROTOCOLS = [Subprotocol(w.subprotocol) for w in WireFormat]


class Refusal(enum.Enum):
    """Why the worker refuses a valid opening handshake with 503 (values: metric labels)."""

    DRAINING = "draining"
    CAPACITY = "capacity"


_REFUSAL_TEXT = {
    Refusal.DRAINING: "Server restarting.\n",
    Refusal.CAPACITY: "Too many connections on this worker.\n",
}


def server_protocol(
    *,
    origins: Sequence[str] | None,
    compression: bool,
    max_frame_bytes: int,
    logger: LoggerLike,
) -> ServerProtocol:
    """The sans-I/O server side of one connection, configured as docs/configuration.md says."""
    return ServerProtocol(
        # No Origin header means no browser, so no cross-site hijacking to fear.
        origins=[*(Origin(o) for o in origins), None] if origins is not None else None,
        extensions=[ServerPerMessageDeflateFactory()] if compression else None,
        subprotocols=SUBPROTOCOLS,
        select_subprotocol=_select_subprotocol,
        max_size=max_frame_bytes,
        logger=logger,
    )


def answer_handshake(
    ws: ServerProtocol, request: Request, refusal: Refusal | None
) -> tuple[Response, str | None]:
    """The response to an opening *request*, and why it was rejected (None for a 101).

    *refusal* is the worker's own reason to refuse (503); without one, websockets checks the
    request. The reason is a ``herald_handshake_rejections`` label.
    """
    if refusal is not None:
        return ws.reject(503, _REFUSAL_TEXT[refusal]), refusal.value
    response = ws.accept(request)
    if response.status_code == 101:
        return response, None
    exc = ws.handshake_exc
    if isinstance(exc, InvalidOrigin):
        return response, "origin"
    if isinstance(exc, NegotiationError):
        return response, "subprotocol"
    return response, "bad_handshake"


def wire_of(response: Response) -> WireFormat:
    """The wire format a 101 response agreed on (JSON when no subprotocol was chosen)."""
    subprotocol = response.headers.get("Sec-WebSocket-Protocol")
    return WireFormat(subprotocol) if subprotocol else WireFormat.JSON


def _select_subprotocol(
    protocol: ServerProtocol, offered: Sequence[Subprotocol]
) -> Subprotocol | None:
    """The first Herald subprotocol the client offers; JSON when it offers none."""
    if not offered:
        return None
    for name in offered:
        if name in SUBPROTOCOLS:
            return name
    raise NegotiationError("expected one of " + ", ".join(SUBPROTOCOLS))


class Fragments:
    """A message arriving in fragments (RFC 6455 section 5.4).

    Made for the first fragment and dropped with the last, so an idle connection holds none.
    """

    __slots__ = ("parts", "text")

    def __init__(self, first: bytes, text: bool) -> None:
        self.parts = [first]
        self.text = text
        """Whether the message is a text message (its first frame was TEXT)."""

    def add(self, data: bytes, fin: bool) -> bytes | None:
        """Add a continuation frame's data; the whole message once *fin* is set, else None."""
        self.parts.append(data)
        return b"".join(self.parts) if fin else None


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
