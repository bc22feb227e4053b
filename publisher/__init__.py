"""Herald's publishing library: what any Python backend needs to push events to browsers.

* :class:`publisher.Publisher` (:mod:`publisher.publish`): ``publish(channel, data)`` over
  Redis;
* ``herald-publish`` (:mod:`publisher.cli`): the same from a shell.

It depends on :mod:`herald_contract` only (installs with redis and msgpack): the channel
grammar, envelope, key layout and scripts it uses are the contract's, the same the socket
fleet uses. The names a backend needs are importable from here; the errors are the
contract's (:mod:`herald_contract.errors`), whose root ``HeraldPublishError`` catches them all.
"""

from herald_contract.channels import Channel, ChannelKind, parse_channel
from herald_contract.envelope import Envelope
from herald_contract.errors import HeraldPublishError, InvalidChannel, InvalidPayload, PublishFailed
from herald_contract.namespaces import Namespaces
from herald_contract.namespaces_file import NamespaceFileError, load_namespaces
from herald_contract.stream import PublishResult
from publisher.publish import Publisher

__all__ = [
    "Channel",
    "ChannelKind",
    "Envelope",
    "HeraldPublishError",
    "InvalidChannel",
    "InvalidPayload",
    "NamespaceFileError",
    "Namespaces",
    "PublishFailed",
    "PublishResult",
    "Publisher",
    "load_namespaces",
    "parse_channel",
]
