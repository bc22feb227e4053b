"""Every exception the contract raises, in one tree.

    HeraldError                 root: catch it to catch anything this package raises
    ├── InvalidChannel          the name breaks the channel grammar (docs/protocol.md#channels)
    │                           also a ValueError
    ├── InvalidPayload          the data or event id cannot travel (JSON and msgpack alike)
    │                           also a ValueError
    ├── InvalidEnvelope         bytes on the bus that are not a version-1 envelope
    │                           also a ValueError
    ├── PublishFailed           a publisher could not make a publication; retry with the
    │                           same event id (the publishing library raises it)
    ├── BusUnavailable          the bus (Redis) cannot serve a call right now; retry later
    ├── BusStateError           a bus method called in a lifecycle state that forbids it
    │                           (a bug in the caller, not an outage); also a RuntimeError
    └── SettingsError           a setting whose value cannot work (defined beside the
                                settings rules, herald_contract/config.py); also a ValueError

``HeraldPublishError`` is the root's former name, kept because publishers catch it.

Messages are built from fields; nothing here is sent to a browser verbatim.
"""

from __future__ import annotations


class HeraldError(Exception):
    """Base class of every error this package raises."""


HeraldPublishError = HeraldError
"""The root's former name; publishers catch it (``publisher`` re-exports it)."""


class InvalidChannel(HeraldError, ValueError):
    """A channel name that breaks the grammar."""

    def __init__(self, name: str, why: str) -> None:
        self.name = name
        self.why = why
        shown = name if len(name) <= 80 else name[:80] + "..."
        super().__init__(f"invalid channel {shown!r}: {why}")


class InvalidPayload(HeraldError, ValueError):
    """Publication data that is not a JSON-compatible value or is too large, or a bad event id."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"invalid payload: {why}")


class InvalidEnvelope(HeraldError, ValueError):
    """Bytes on the bus that are not a version-1 envelope (herald_contract.envelope)."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(why)


class PublishFailed(HeraldError):
    """The bus did not take the publication (it may be retried with the same event id)."""

    def __init__(self, channel: str, why: str) -> None:
        self.channel = channel
        self.why = why
        super().__init__(f"publish to {channel!r} failed: {why}")


class BusUnavailable(HeraldError):
    """The bus cannot serve the call right now (Redis down); retry later."""

    def __init__(self, why: str) -> None:
        self.why = why
        super().__init__(f"bus unavailable: {why}")


class BusStateError(HeraldError, RuntimeError):
    """A bus method called in a state that forbids it, such as starting a bus twice."""

    def __init__(self, action: str, state: str) -> None:
        self.action = action
        self.state = state
        super().__init__(f"cannot {action} a bus that is {state}")
