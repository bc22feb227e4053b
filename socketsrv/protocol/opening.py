"""The open token: a client's first commands carried by its upgrade request.

docs/protocol.md#fast-open. A client may offer, beside its encoding's subprotocol, one more entry in
``Sec-WebSocket-Protocol``: ``herald.v1.open.`` followed by the unpadded base64url of a JSON
array of commands, the first a ``connect`` and the others ``subscribe`` commands, each the
object it would otherwise send as a message. The server runs them as the connection's first
messages and writes the 101, the connect reply, every subscribe reply and what fits of the
replays in one write: a reconnect is one round trip.

Why the subprotocol list and not a query parameter: a browser cannot set other headers on
a websocket, and a URL's query string is in every access log (HAProxy's request line,
nginx's ``$request``), where a token must not be; ``Sec-WebSocket-Protocol`` is not logged by
default and passes proxies unchanged. Base64url is made of RFC 7230 token characters, which
is what a browser accepts in the subprotocol list.

Nothing here does I/O: :func:`open_commands` only checks the envelope (one token, base64url,
a JSON array of objects, a connect first, then subscribes); each command is then parsed and
answered exactly as a message would be (socketsrv/protocol/commands.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence

import msgspec

OPEN_PREFIX = "herald.v1.open."
MAX_OPEN_TOKEN_LENGTH = 8000
"""The longest open token, prefix included: one header line holds at most 8,192 bytes
(websockets' limit), with the encoding's subprotocol beside it."""


class BadOpen(ValueError):
    """The open token is not one the server can run (HTTP 400 at the handshake)."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def is_open_token(subprotocol: str) -> bool:
    return subprotocol.startswith(OPEN_PREFIX)


def open_commands(offered: Sequence[str]) -> list[str] | None:
    """The commands of the open token among the *offered* subprotocols, each as JSON text;
    None when there is none. Raises :class:`BadOpen` for a token that is not valid."""
    tokens = [s for s in offered if is_open_token(s)]
    if not tokens:
        return None
    if len(tokens) > 1:
        raise BadOpen("more than one open token")
    token = tokens[0]
    if len(token) > MAX_OPEN_TOKEN_LENGTH:
        raise BadOpen(f"open token longer than {MAX_OPEN_TOKEN_LENGTH} characters")
    encoded = token[len(OPEN_PREFIX) :]
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True)
        commands = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, RecursionError):
        raise BadOpen("open token is not base64url of JSON") from None
    if not isinstance(commands, list) or not commands:
        raise BadOpen("open token is not a non-empty array of commands")
    if not all(isinstance(c, dict) for c in commands):
        raise BadOpen("open token holds a command that is not an object")
    if commands[0].get("op") != "connect":
        raise BadOpen("open token does not start with connect")
    if any(c.get("op") != "subscribe" for c in commands[1:]):
        raise BadOpen("open token holds a command other than connect and subscribe")
    return [msgspec.json.encode(c).decode() for c in commands]


def open_token(commands: Sequence[object]) -> str:
    """The open token carrying *commands* (clients and tests)."""
    raw = json.dumps(list(commands), separators=(",", ":")).encode()
    return OPEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
