"""The Q&A domain's errors: what a rule of the site refused, with the fields that say why.

    DomainError
    ├── NotFound           no such <kind> <ident>
    │   └── JustDeleted    this <kind> was just deleted (a concurrent request removed it)
    ├── NotAllowed         you cannot <action> (the rule that refuses it, not a missing login)
    └── InvalidInput       <field>: <problem>, or <problem> alone when no single field is at fault

The domain raises these and knows nothing of HTTP; :mod:`qasite.api.errors` answers each with
its status (404, 403, 422) and the same JSON shape as every other error. Each message is built
from the fields, so a test or a caller can match on a field rather than on the text.
"""

from __future__ import annotations


class DomainError(Exception):
    """The root: every refusal of a domain rule. :attr:`message` is safe to show a user."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(DomainError):
    """No *kind* (``question``, ``answer``, ...) with the id *ident*."""

    def __init__(self, kind: str, ident: int) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"no {kind} {ident}")


class JustDeleted(NotFound):
    """The *kind* row was there when the request loaded it, and is gone now."""

    def __init__(self, kind: str, ident: int) -> None:
        self.kind = kind
        self.ident = ident
        DomainError.__init__(self, f"this {kind} was just deleted")


class NotAllowed(DomainError):
    """The user may not *action* (e.g. ``vote on your own post``)."""

    def __init__(self, action: str) -> None:
        self.action = action
        super().__init__(f"you cannot {action}")


class InvalidInput(DomainError):
    """*problem* with the input *field*; *field* None when the fault is a combination of them."""

    def __init__(self, field: str | None, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(problem if field is None else f"{field}: {problem}")
