"""Image checks (qasite/domain/images.py): the type comes from the bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from qasite.domain.images import NotAnImage, check_image
from tests.qasite.support import png_bytes


def _encoded(kind: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (3, 2)).save(out, format=kind)
    return out.getvalue()


@pytest.mark.parametrize(
    ("kind", "content_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_accepted_images_are_identified_by_content(kind: str, content_type: str) -> None:
    checked = check_image(_encoded(kind), max_pixels=100)
    assert (checked.content_type, checked.width, checked.height) == (content_type, 3, 2)


@pytest.mark.parametrize(
    "data", [b"", b"hello", _encoded("BMP"), png_bytes()[:40], b"<svg xmlns='x'></svg>"]
)
def test_anything_else_is_not_an_image(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        check_image(data, max_pixels=10_000)


def test_an_image_with_too_many_pixels_is_refused() -> None:
    with pytest.raises(NotAnImage, match="pixels"):
        check_image(png_bytes(100, 100), max_pixels=9_999)
