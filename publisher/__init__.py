"""Herald's publishing library: what any Python backend needs to push events to browsers.

The names shared by every side of Herald live here, defined once:

* :mod:`publisher.channels`: the channel grammar (which names exist, who may read them);
* :mod:`publisher.envelope`: the msgpack envelope a publication travels in;
* :mod:`publisher.keys`: the Redis key layout (one hash slot per channel);
* :mod:`publisher.publish`: ``Publisher.publish(channel, data)`` over Redis.

socketsrv imports these modules; it never redefines them.
"""

from publisher.channels import Channel, ChannelKind, parse_channel
from publisher.envelope import Envelope
from publisher.errors import HeraldPublishError, InvalidChannel, InvalidPayload

__all__ = [
    "Channel",
    "ChannelKind",
    "Envelope",
    "HeraldPublishError",
    "InvalidChannel",
    "InvalidPayload",
    "parse_channel",
]
