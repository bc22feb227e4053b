"""The publish API's requests and replies; FastAPI builds the OpenAPI document from them.

The checks here are the shape only (types, lengths, the event id's alphabet); the channel
grammar, each kind's largest data and JSON compatibility are the publishing library's
(:func:`publisher.publish.check_publication`), applied by the routes to every publication
before any of a request's is made.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from herald_contract.history import MAX_EVENT_ID_LENGTH

MAX_ITEMS = 1000
"""The most channels of a broadcast and publications of a batch."""

EVENT_ID = Field(
    default="",
    pattern=rf"^[A-Za-z0-9_.:\-]{{0,{MAX_EVENT_ID_LENGTH}}}$",
    description=(
        "Idempotency key: 1-128 of A-Z a-z 0-9 _ . : - (empty: none). A repeat on the same"
        " channel within HERALD_IDEMPOTENCY_TTL_S (default 24 h) publishes nothing and"
        " answers the first publication's position with duplicate: true."
    ),
)
CHANNEL = Field(
    min_length=1,
    description=(
        "A channel of the namespace file, e.g. question:42 (the document's pattern is the"
        " installation's grammar)"
    ),
)
DATA = Field(
    description=(
        "Any JSON value, at most the channel kind's max_data_bytes as compact JSON; integers"
        " from -2**63 to 2**64-1 (the envelope is msgpack). Checked by the server: 422"
        " invalid_data otherwise"
    )
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublishRequest(Strict):
    channel: str = CHANNEL
    data: JsonValue = DATA
    event_id: str = EVENT_ID


class BroadcastRequest(Strict):
    channels: list[str] = Field(
        min_length=1,
        max_length=MAX_ITEMS,
        description="Distinct channels; each gets its own publication of the same data",
    )
    data: JsonValue = DATA
    event_id: str = EVENT_ID


class BatchRequest(Strict):
    publications: list[PublishRequest] = Field(
        min_length=1,
        max_length=MAX_ITEMS,
        description="Published in this order on each channel; channels in parallel",
    )


class Published(BaseModel):
    """One publication's place in its channel, as the Python library returns it."""

    channel: str
    epoch: str = Field(description="The channel's current history (changes when it is lost)")
    offset: int = Field(description="The publication's number in the epoch, from 1")
    duplicate: bool = Field(description="True: the event id was already published; nothing new")


class PublishedMany(BaseModel):
    results: list[Published] = Field(description="One per channel or publication, in order")


class ErrorInfo(BaseModel):
    code: int = Field(description="The HTTP status")
    reason: str = Field(description="A slug: unauthenticated, invalid, too_large, unavailable, ...")
    message: str


class Problem(BaseModel):
    where: str = Field(description="The field at fault, e.g. publications.3.channel")
    reason: str = Field(description="invalid, invalid_channel, invalid_data, invalid_event_id")
    problem: str


class ItemFailed(BaseModel):
    channel: str
    error: ErrorInfo


class ErrorDetail(ErrorInfo):
    problems: list[Problem] | None = Field(default=None, description="422: every problem found")
    results: list[Published | ItemFailed] | None = Field(
        default=None,
        description=(
            "503 of a broadcast or batch: what each item got (some may have been published);"
            " retry with the same event ids"
        ),
    )


class ErrorBody(BaseModel):
    error: ErrorDetail
