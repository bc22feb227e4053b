"""Image attachments: checked from their bytes, stored on disk under a random name.

The type comes from the content (Pillow identifies and verifies the image), never from the
client's filename or Content-Type; only PNG, JPEG, GIF and WebP are accepted, each at most
``max_attachment_bytes`` and ``max_image_pixels``.

Decompression bombs (issue 11, item 14): a 38 KB PNG can declare 6300x6300 zero pixels, 160 MB
once decoded. :func:`check_image` reads only the header (``Image.open`` decodes nothing) and
refuses more than ``max_pixels`` pixels, counted over every frame of an animation, before any
decoding, with :class:`TooManyPixels`. :func:`reencode` then decodes what passed and stores
Pillow's own encoding of it: no metadata, no trailing bytes, no chunk the browser would parse
that the check did not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

CONTENT_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp"}


class NotAnImage(ValueError):
    """The bytes are not an image of an accepted type (answered 415)."""


class TooManyPixels(NotAnImage):
    """An accepted type, but more pixels than ``max_image_pixels`` (answered 413)."""

    def __init__(self, width: int, height: int, frames: int, max_pixels: int) -> None:
        self.pixels = width * height * frames
        shown = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
        super().__init__(f"{shown} is {self.pixels} pixels, more than {max_pixels}")


@dataclass(frozen=True, slots=True)
class CheckedImage:
    content_type: str
    width: int
    height: int
    sha256: str
    size_bytes: int


def check_image(data: bytes, *, max_pixels: int) -> CheckedImage:
    """Identify *data*; raise :class:`NotAnImage` unless it is an accepted, intact image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind, (width, height) = image.format, image.size
                if kind not in CONTENT_TYPES:
                    raise NotAnImage(f"{kind} images are not accepted")
                if width * height > max_pixels:
                    raise TooManyPixels(width, height, 1, max_pixels)
                frames = getattr(image, "n_frames", 1)
                if width * height * frames > max_pixels:
                    raise TooManyPixels(width, height, frames, max_pixels)
                image.verify()
    except NotAnImage:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
    ) as exc:
        raise NotAnImage(f"not a PNG, JPEG, GIF or WebP image ({type(exc).__name__})") from None
    return CheckedImage(
        CONTENT_TYPES[kind], width, height, hashlib.sha256(data).hexdigest(), len(data)
    )


def reencode(data: bytes, checked: CheckedImage) -> tuple[bytes, CheckedImage]:
    """*data* (passed by :func:`check_image`) decoded and encoded again in its type, and what
    describes the new bytes; CPU-bound (call it in a thread); :class:`NotAnImage` if decoding
    fails."""
    kind = next(k for k, v in CONTENT_TYPES.items() if v == checked.content_type)
    out = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.size != (checked.width, checked.height):
                    raise NotAnImage("the image changed while it was read")
                frames = getattr(image, "n_frames", 1)
                decoded: Image.Image = image
                if kind == "JPEG" and image.mode not in ("RGB", "L", "CMYK"):
                    decoded = image.convert("RGB")
                decoded.load()
                # No EXIF, ICC or text chunks are carried over; every frame of an animation is.
                decoded.save(out, format=kind, quality=90, save_all=frames > 1)
    except NotAnImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, ValueError,
            SyntaxError, EOFError) as exc:  # fmt: skip
        raise NotAnImage(f"the image could not be decoded ({type(exc).__name__})") from None
    encoded = out.getvalue()
    return encoded, dataclasses.replace(
        checked, sha256=hashlib.sha256(encoded).hexdigest(), size_bytes=len(encoded)
    )


class ImageStore:
    """Files under one directory, named by a random token plus the type's extension."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_of(self, storage_name: str) -> Path:
        return self.directory / storage_name

    async def save(self, data: bytes, content_type: str) -> str:
        name = secrets.token_hex(16) + EXTENSIONS[content_type]
        await asyncio.to_thread(self._write, name, data)
        return name

    def _write(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.directory / name)

    async def delete(self, storage_name: str) -> None:
        await asyncio.to_thread(self.path_of(storage_name).unlink, missing_ok=True)

    async def delete_all(self, storage_names: list[str]) -> None:
        """Remove the files of deleted rows (after the commit: a rollback keeps them)."""
        for name in storage_names:
            await self.delete(name)
