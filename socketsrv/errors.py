"""Every exception socketsrv raises, in one tree.

    SocketsrvError              root: catch it to catch anything this package raises
    ├── WrongState              a method called in a lifecycle state that forbids it (a bug
    │                           in the caller, never a client's doing); names the object,
    │                           the action and the state; also a RuntimeError
    ├── TokenRejected           a connection token that authenticates nobody
    │   ├── TokenInvalid        bad signature, algorithm, audience, issuer or claims: 4500
    │   └── TokenExpired        valid but expired: 4004, fetch a fresh token and reconnect
    ├── CommandError            a client message that is not a valid command: an error reply
    │                           with its code, the connection is kept
    └── StartupError            the fleet cannot start (a port in use): one line to show, a
                                non-zero exit (defined beside the supervisor, fleet.py)

Errors of the bus (``BusUnavailable``, ``InvalidEnvelope``) and of settings
(``SettingsError``) belong to the contract (herald_contract/errors.py, config.py).

Messages are built from the fields; none is sent to a client verbatim (a client gets the
fixed texts of socketsrv/protocol/codes.py).
"""

from __future__ import annotations

import enum

from socketsrv.protocol.codes import ErrorCode


class SocketsrvError(Exception):
    """Base class of every error this package raises."""


class WrongState(SocketsrvError, RuntimeError):
    """*action* was asked of *thing* (``"worker"``, ``"session"``, ``"connection"``) in *state*."""

    def __init__(self, thing: str, action: str, state: enum.Enum) -> None:
        self.thing = thing
        self.action = action
        self.state = state
        super().__init__(f"{thing}: cannot {action} in state {state.value}")


class TokenRejected(SocketsrvError):
    """Base class: the token does not authenticate anyone; *why* is for logs only."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"token rejected: {why}")


class TokenInvalid(TokenRejected):
    """Bad signature, algorithm, audience, issuer or claims: close 4500, do not reconnect."""


class TokenExpired(TokenRejected):
    """Valid but expired: close 4004, fetch a fresh token and reconnect."""


class CommandError(SocketsrvError):
    """A message that is not a valid command; answered with an error reply, connection kept.

    *why* is a fixed, client-safe explanation; *request_id* is the command's id when it had
    a valid one, so that the error reply names it.
    """

    def __init__(self, code: ErrorCode, why: str, request_id: int | None = None) -> None:
        self.code = code
        self.why = why
        self.request_id = request_id
        super().__init__(f"{code.name.lower()}: {why}")
