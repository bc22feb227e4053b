"""The channel grammar (docs/protocol.md#channels), as the namespace file declares it.

Every channel name that reaches Redis or the subscription table passes :func:`parse_channel`
first, so a hostile client cannot make Herald allocate keys of arbitrary size or shape. The
kinds, their key grammars, who may read them, their retention and their conflation come from
the installation's namespace file (:mod:`herald_contract.namespaces`,
:mod:`herald_contract.namespaces_file`, docs/namespaces.md); the shipped default holds the
Q&A site's kinds:

    question:<id>     public   scores, answers, comments, edits, accepted answer of one question
    questions:new     public   new questions ("N new questions" banners)
    tag:<name>        public   new questions with that tag
    user:<id>         private  inbox items, unread count, reputation of that user only
    probe:<name>      public   reserved: the end-to-end prober's probes (launch/prober.py)

Each function takes the installation's :class:`~herald_contract.namespaces.Namespaces`;
None means the shipped file's.
"""

from __future__ import annotations

from herald_contract.namespaces import (
    MAX_CHANNEL_LENGTH,
    MAX_ID,
    Channel,
    ChannelKind,
    ConflationKey,
    Namespaces,
)
from herald_contract.namespaces_file import default_namespaces

__all__ = [
    "MAX_CHANNEL_LENGTH",
    "MAX_ID",
    "Channel",
    "ChannelKind",
    "ConflationKey",
    "conflation_key",
    "parse_channel",
]


def parse_channel(name: object, namespaces: Namespaces | None = None) -> Channel:
    """Parse and validate a channel name; raise :class:`InvalidChannel` if it breaks the grammar
    of *namespaces* (None: the shipped file's)."""
    return (namespaces or default_namespaces()).parse(name)


def conflation_key(
    channel: str, data: object, namespaces: Namespaces | None = None
) -> ConflationKey | None:
    """The conflation key of a publication of *channel* (a valid name) carrying *data*;
    None when it must never be conflated (docs/protocol.md#conflation). The rules are the
    kind's ``conflation`` in *namespaces* (None: the shipped file's)."""
    return (namespaces or default_namespaces()).conflation_key(channel, data)
