"""Request and response bodies: parsed and validated at the boundary, typed inside.

Every text field refuses NUL characters and lone surrogates (PostgreSQL cannot store the
first, no UTF-8 encoder can write the second), so such input is a 422, not a database error.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field

from herald_contract.channels import MAX_ID
from qasite.domain import models
from qasite.domain.names import UNNAMED


def _clean_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text") from None
    return value


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


_NUMBER = re.compile(r"\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*")


def _iso_time(value: object) -> object:
    """Only ISO 8601 text: a bare number, which pydantic would read as Unix time, is refused
    (the schema says ``date-time``; found by schemathesis: ``created_to=0.5`` was 1970)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("should be a date (2026-01-31) or a date and time in ISO 8601")
    return value


Text = Annotated[str, AfterValidator(_clean_text)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
TagName = Annotated[
    str,
    BeforeValidator(_lower),
    Field(pattern=r"^[a-z0-9.][a-z0-9+#.\-]{0,34}$", description="1-35 of a-z 0-9 + # . -"),
]
Title = Annotated[Text, BeforeValidator(_strip), Field(min_length=5, max_length=models.MAX_TITLE)]
Body = Annotated[Text, Field(min_length=1, max_length=models.MAX_BODY)]
CommentBody = Annotated[
    Text, BeforeValidator(_strip), Field(min_length=1, max_length=models.MAX_COMMENT)
]
Tags = Annotated[list[TagName], Field(min_length=1, max_length=models.MAX_TAGS)]
Moment = Annotated[dt.datetime, BeforeValidator(_iso_time)]
"""A time in ISO 8601 (a date alone is its midnight; no zone is UTC), never a bare number."""
Password = Annotated[Text, Field(min_length=8, max_length=128)]
OpaqueToken = Annotated[Text, Field(min_length=1, max_length=200)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=models.MAX_BODY)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- users and sessions -----------------------------------------------------------------


class RegisterIn(Input):
    email: Annotated[EmailStr, Field(max_length=models.MAX_EMAIL)]
    password: Password
    display_name: (
        Annotated[Text, BeforeValidator(_strip), Field(min_length=1, max_length=64)] | None
    ) = None


class LoginIn(Input):
    email: Annotated[Text, Field(min_length=1, max_length=models.MAX_EMAIL)]
    password: Annotated[Text, Field(min_length=1, max_length=128)]


class RefreshIn(Input):
    refresh_token: OpaqueToken


class VerifyIn(Input):
    token: OpaqueToken


class UserOut(Output):
    id: int
    email: str
    display_name: str
    verified: bool
    created_at: dt.datetime


class RegisteredOut(BaseModel):
    """The answer to every accepted registration, the email taken or not (no enumeration)."""

    email: str
    message: str = "check your mailbox: we sent a message to this address"


class TokensOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_at: float
    refresh_token: str
    refresh_expires_at: float


class SocketTokenOut(BaseModel):
    token: str | None = Field(description="null for anonymous visitors: connect without a token")
    expires_at: float | None
    user_id: int | None


# --- posts ------------------------------------------------------------------------------


class QuestionIn(Input):
    title: Title
    body: Body
    tags: Tags


class QuestionPatch(Input):
    title: Title | None = None
    body: Body | None = None
    tags: Tags | None = None


class AnswerIn(Input):
    body: Body


class CommentIn(Input):
    body: CommentBody


class VoteIn(Input):
    value: Literal[1, -1]


AuthorName = Annotated[
    str, Field(description="the author's display name (a neutral label when it is empty)")
]


MyVote = Annotated[
    Literal[-1, 0, 1],
    Field(description="the signed-in caller's vote on this post; 0 without one or anonymous"),
]
EditedAt = Annotated[
    dt.datetime | None, Field(description="when the post was last edited; null if never")
]


class CommentOut(Output):
    id: int
    author_id: int
    author_name: AuthorName = UNNAMED
    question_id: int | None
    answer_id: int | None
    body: str
    edit_version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    edited_at: EditedAt = None


class AttachmentOut(Output):
    id: int
    url: str
    content_type: str
    size_bytes: int
    width: int
    height: int
    question_id: int | None
    answer_id: int | None


class AnswerOut(Output):
    id: int
    question_id: int
    author_id: int
    author_name: AuthorName = UNNAMED
    body_md: str
    body_html: str
    score: int
    score_version: int
    edit_version: int
    accepted: bool = False
    created_at: dt.datetime
    updated_at: dt.datetime
    edited_at: EditedAt = None
    my_vote: MyVote = 0
    comments: list[CommentOut] = []
    attachments: list[AttachmentOut] = []


class QuestionSummary(Output):
    id: int
    author_id: int
    author_name: AuthorName = UNNAMED
    title: str
    tags: list[str]
    score: int
    answer_count: int
    accepted_answer_id: int | None
    created_at: dt.datetime
    last_activity_at: dt.datetime


class QuestionOut(QuestionSummary):
    body_md: str
    body_html: str
    score_version: int
    edit_version: int
    updated_at: dt.datetime
    edited_at: EditedAt = None
    my_vote: MyVote = 0
    answers: list[AnswerOut] = []
    comments: list[CommentOut] = []
    attachments: list[AttachmentOut] = []


class QuestionPage(BaseModel):
    items: list[QuestionSummary]
    next_cursor: str | None = Field(
        description="pass as ?cursor= for the next page; null at the end"
    )
    prev_cursor: str | None = Field(
        default=None,
        description="pass as ?cursor= for the previous page; null on the first page",
    )
    total: int | None = Field(
        default=None, description="with count=true: how many questions match in all"
    )


class PreviewIn(Input):
    body: Body


class PreviewOut(BaseModel):
    body_html: str = Field(description="the HTML a post with this body would show (sanitized)")


class TagSuggestion(BaseModel):
    name: str
    questions: int = Field(description="how many questions carry the tag")


class VoteOut(BaseModel):
    post: str = Field(description="question:<id> or answer:<id>")
    score: int
    version: int
    my_vote: Literal[-1, 0, 1]


class InboxItemOut(Output):
    id: int
    kind: str
    actor_id: int | None
    actor_name: str | None = Field(description="the actor's display name; null without an actor")
    question_id: int | None
    question_title: str | None = Field(
        default=None, description="the title of the question; null without a question"
    )
    answer_id: int | None
    comment_id: int | None
    excerpt: str = Field(description="the plain-text start of the post (no Markdown)")
    created_at: dt.datetime
    read: bool


class InboxPage(BaseModel):
    items: list[InboxItemOut]
    unread: int
    next_cursor: str | None


class UnreadOut(BaseModel):
    unread: int
