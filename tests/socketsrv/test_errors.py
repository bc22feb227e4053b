"""socketsrv/errors.py: one exception tree, messages built from fields."""

from __future__ import annotations

import inspect

import socketsrv.errors as errors
from socketsrv.errors import CommandError, SocketsrvError, TokenExpired, WrongState
from socketsrv.protocol.codes import ErrorCode
from socketsrv.worker import WorkerState


def test_every_exception_of_the_package_descends_from_one_root() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) == 6
    assert all(issubclass(c, SocketsrvError) for c in classes)


def test_every_class_is_drawn_in_the_module_docstring() -> None:
    assert errors.__doc__ is not None
    for name in (
        "SocketsrvError",
        "WrongState",
        "TokenRejected",
        "TokenInvalid",
        "TokenExpired",
        "CommandError",
    ):
        assert name in errors.__doc__


def test_messages_are_built_from_the_fields() -> None:
    wrong = WrongState("worker", "drain", WorkerState.STOPPED)
    assert str(wrong) == "worker: cannot drain in state stopped"
    assert isinstance(wrong, RuntimeError)
    assert str(TokenExpired("exp has passed")) == "token rejected: exp has passed"
    command = CommandError(ErrorCode.BAD_REQUEST, "malformed JSON", 7)
    assert (str(command), command.request_id) == ("bad_request: malformed JSON", 7)
