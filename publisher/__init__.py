"""Herald's publishing library: what any Python backend needs to push events to browsers.

* :class:`publisher.publish.Publisher`: ``publish(channel, data)`` over Redis;
* ``herald-publish`` (:mod:`publisher.cli`): the same from a shell.

It depends on :mod:`herald_contract` only (installs with redis and msgpack): the channel
grammar, envelope and scripts it uses are the contract's, the same the socket fleet uses.
"""

from herald_contract.channels import Channel, ChannelKind, parse_channel
from herald_contract.envelope import Envelope
from herald_contract.errors import HeraldPublishError, InvalidChannel, InvalidPayload

__all__ = [
    "Channel",
    "ChannelKind",
    "Envelope",
    "HeraldPublishError",
    "InvalidChannel",
    "InvalidPayload",
    "parse_channel",
]
