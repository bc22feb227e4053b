"""The Redis key layout of a channel, defined once for the publisher and socketsrv.

Every key and the pub/sub channel of one Herald channel carry the channel name as a hash tag
(``{question:42}``), so all of them live in one Redis Cluster slot: the publish script may touch
them together, and sharded pub/sub (SPUBLISH) later needs no format change. The grammar in
:mod:`herald_contract.channels` forbids braces, so a tag never ends early.

    <prefix>:{<channel>}:history       stream, entry id "<offset>-0", fields t (ms) and p (envelope)
    <prefix>:{<channel>}:meta          hash: epoch, top (last offset)
    <prefix>:{<channel>}:event:<id>    string: '<offset> <epoch>' of an idempotent publish
    <prefix>:{<channel>}:live          pub/sub channel carrying the envelope
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PREFIX = "herald"


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Key names under one prefix (one Herald installation per prefix)."""

    prefix: str = DEFAULT_PREFIX

    def _tagged(self, channel: str) -> str:
        return f"{self.prefix}:{{{channel}}}"

    def history(self, channel: str) -> str:
        return f"{self._tagged(channel)}:history"

    def meta(self, channel: str) -> str:
        return f"{self._tagged(channel)}:meta"

    def event_prefix(self, channel: str) -> str:
        """Prefix of the idempotency keys; the script appends the event id."""
        return f"{self._tagged(channel)}:event:"

    def live(self, channel: str) -> str:
        return f"{self._tagged(channel)}:live"

    def channel_of_live(self, live: str) -> str | None:
        """The Herald channel of a pub/sub channel name, None if it is not one of ours."""
        head = f"{self.prefix}:{{"
        if not (live.startswith(head) and live.endswith("}:live")):
            return None
        return live[len(head) : -len("}:live")]
