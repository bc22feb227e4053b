"""Exceptions of the publishing library.

    HeraldPublishError
    ├── InvalidChannel      the name breaks the channel grammar (docs/protocol.md#channels)
    ├── InvalidPayload      the data cannot travel as JSON and msgpack alike
    ├── PublishFailed       the bus refused or could not be reached
    └── BusUnavailable      the bus (Redis) cannot serve a call right now; retry later

Messages are built from fields; nothing here is sent to a browser verbatim.
"""


class HeraldPublishError(Exception):
    """Base class of every error this package raises."""


class InvalidChannel(HeraldPublishError, ValueError):
    """A channel name that breaks the grammar."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        shown = name if len(name) <= 80 else name[:80] + "..."
        super().__init__(f"invalid channel {shown!r}: {why}")


class InvalidPayload(HeraldPublishError, ValueError):
    """Publication data that is not a JSON-compatible value or is too large."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"invalid payload: {why}")


class PublishFailed(HeraldPublishError):
    """The bus did not take the publication (it may be retried with the same event id)."""

    def __init__(self, channel: str, why: str) -> None:
        self.channel = channel
        self.why = why
        super().__init__(f"publish to {channel!r} failed: {why}")


class BusUnavailable(HeraldPublishError):
    """The bus cannot serve the call right now (Redis down); retry later."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"bus unavailable: {why}")
