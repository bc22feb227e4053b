"""Image attachments: upload to your question or answer, served back to anyone.

An upload is the image's bytes as the request body (``fetch(url, {method: "POST", body:
file})``); its type is read from the content, not from headers. Over ``max_attachment_bytes``:
413, before the body is read when Content-Length says so, else as soon as it grows past it.
An image of more than ``max_image_pixels`` pixels is 413 before it is decoded; what passes is
decoded and encoded again (in a thread), and those bytes are stored and served.

Quotas per uploader (issue 11, item 14): ``uploads_per_day`` uploads in any 24 hours, counted
before the body is read in the sliding windows of the login limits (through Redis when it is
set), else 429 with ``Retry-After``; and ``upload_quota_bytes`` of stored attachments in all,
else 413 (deleting posts frees their attachments' bytes).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.responses import FileResponse, Response
from sqlalchemy import func, select

from qasite.api.deps import Ctx, ItemId, OwnedAnswer, OwnedQuestion, ReadSession, WriteTx
from qasite.api.errors import (
    ERROR_RESPONSES,
    Invalid,
    NotFound,
    PayloadTooLarge,
    TooManyAttempts,
    UnsupportedMedia,
)
from qasite.api.outputs import attachment_out
from qasite.api.schemas import AttachmentOut
from qasite.core.auth_limits import AuthLimits
from qasite.core.metrics import QAMetrics
from qasite.core.ratelimit import Record
from qasite.domain import events
from qasite.domain.images import (
    CheckedImage,
    NotAnImage,
    TooManyPixels,
    check_image,
    reencode,
)
from qasite.domain.models import Answer, Attachment, Question

router = APIRouter(prefix="/api", tags=["attachments"], responses=ERROR_RESPONSES)

_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {
        "description": "Larger than max_attachment_bytes, more than max_image_pixels, or over "
        "the uploader's upload_quota_bytes"
    },
    429: {"description": "Over the uploader's uploads_per_day; see Retry-After"},
    415: {"description": "Not a PNG, JPEG, GIF or WebP image"},
}
CACHE_CONTROL = "public, max-age=31536000, immutable"
"""An attachment's bytes never change under its id."""


def _metrics(request: Request) -> QAMetrics:
    metrics: QAMetrics = request.app.state.metrics
    return metrics


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"an attachment is at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"an attachment is at most {limit} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise Invalid("the request body must be the image's bytes")
    return data


DAY_S = 86400.0


def _checked(data: bytes, max_pixels: int) -> tuple[bytes, CheckedImage]:
    """The header checks, then the decoding and encoding again: in a worker thread."""
    return reencode(data, check_image(data, max_pixels=max_pixels))


async def _within_daily_quota(request: Request, user_id: int, uploads_per_day: int) -> None:
    """Count an upload of *user_id* in the last 24 hours; 429 past ``uploads_per_day``."""
    limits: AuthLimits = request.app.state.auth_limits
    verdict = await limits.windows.attempt(
        f"upload:{user_id}",
        limit=uploads_per_day,
        window_s=DAY_S,
        now=time.time(),
        record=Record.IF_ALLOWED,
    )
    if not verdict.allowed:
        _metrics(request).uploads_refused.labels("daily_quota").inc()
        retry_after_s = max(1, math.ceil(verdict.retry_after_s))
        raise TooManyAttempts(
            f"at most {uploads_per_day} uploads a day; retry in {retry_after_s} s",
            retry_after_s,
        )


async def _within_storage_quota(
    request: Request, tx: WriteTx, user_id: int, size: int, quota: int
) -> None:
    """413 when *size* more bytes would take *user_id*'s attachments over *quota*."""
    stored = await tx.session.scalar(
        select(func.coalesce(func.sum(Attachment.size_bytes), 0)).where(
            Attachment.owner_id == user_id
        )
    )
    if int(stored or 0) + size > quota:
        _metrics(request).uploads_refused.labels("storage_quota").inc()
        raise PayloadTooLarge(
            f"your attachments take {int(stored or 0)} of your {quota} bytes; this one "
            f"({size} bytes) does not fit: delete posts with attachments to free some"
        )


async def _attach(
    request: Request, context: Ctx, tx: WriteTx, post: Question | Answer
) -> AttachmentOut:
    """Store the request body's image and attach it to *post* (its author's, checked before)."""
    settings = context.settings
    await _within_daily_quota(request, post.author_id, settings.uploads_per_day)
    data = await _read_limited(request, settings.max_attachment_bytes)
    await _within_storage_quota(request, tx, post.author_id, len(data), settings.upload_quota_bytes)
    try:
        data, image = await asyncio.to_thread(_checked, data, settings.max_image_pixels)
    except TooManyPixels as exc:
        _metrics(request).uploads_refused.labels("too_many_pixels").inc()
        raise PayloadTooLarge(
            f"an image is at most {settings.max_image_pixels} pixels: {exc}"
        ) from None
    except NotAnImage as exc:
        raise UnsupportedMedia(str(exc)) from None
    name = await context.images.save(data, image.content_type)
    on_question = isinstance(post, Question)
    attachment = Attachment(
        owner_id=post.author_id,
        question_id=post.id if on_question else None,
        answer_id=None if on_question else post.id,
        content_type=image.content_type,
        size_bytes=image.size_bytes,
        width=image.width,
        height=image.height,
        sha256=image.sha256,
        storage_name=name,
    )
    tx.session.add(attachment)
    try:
        await tx.session.flush()
        out = attachment_out(attachment)
        question_id = post.id if isinstance(post, Question) else post.question_id
        events.attachment_added(tx.session, question_id, attachment, url=out.url)
        await tx.commit()
    except BaseException:
        await context.images.delete(name)
        raise
    return out


_UPLOAD_ROUTE: dict[str, Any] = {
    "status_code": status.HTTP_201_CREATED,
    "response_model": AttachmentOut,
    "openapi_extra": _UPLOAD,
    "responses": _UPLOAD_ERRORS,
}
"""Both upload routes: the image's bytes as the body, 201 with the attachment."""


@router.post("/questions/{question_id}/attachments", **_UPLOAD_ROUTE)
async def attach_to_question(
    request: Request, question: OwnedQuestion, tx: WriteTx, context: Ctx
) -> AttachmentOut:
    """Attach an image to your question."""
    return await _attach(request, context, tx, question)


@router.post("/answers/{answer_id}/attachments", **_UPLOAD_ROUTE)
async def attach_to_answer(
    request: Request, answer: OwnedAnswer, tx: WriteTx, context: Ctx
) -> AttachmentOut:
    """Attach an image to your answer."""
    return await _attach(request, context, tx, answer)


@router.get(
    "/attachments/{attachment_id}",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}, "description": "The image"}},
)
async def serve(attachment_id: ItemId, session: ReadSession, context: Ctx) -> Response:
    """The image with its type, length, a strong ETag and a year of caching."""
    attachment = await session.get(Attachment, attachment_id)
    if attachment is None:
        raise NotFound(f"no attachment {attachment_id}")
    path = context.images.path_of(attachment.storage_name)
    if not path.is_file():
        raise NotFound(f"attachment {attachment_id} is missing from storage")
    return FileResponse(
        path,
        media_type=attachment.content_type,
        headers={
            "Cache-Control": CACHE_CONTROL,
            "ETag": f'"{attachment.sha256}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'",
        },
    )
