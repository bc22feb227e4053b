"""Image checks (qasite/domain/images.py): the type comes from the bytes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from qasite.domain.images import NotAnImage, TooManyPixels, check_image, reencode
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


def _zero_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG", optimize=True)
    return out.getvalue()


def test_a_decompression_bomb_is_refused_from_its_header() -> None:
    bomb = _zero_png(6300, 6300)  # the review's: ~40 Mpx in a few KB
    assert len(bomb) < 64 * 1024
    with pytest.raises(TooManyPixels, match="6300x6300"):
        check_image(bomb, max_pixels=4096 * 4096)


def test_every_frame_of_an_animation_counts() -> None:
    out = io.BytesIO()
    frames = [Image.new("L", (10, 10), shade) for shade in (0, 80, 160, 240)]
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:])
    assert check_image(out.getvalue(), max_pixels=400).width == 10
    with pytest.raises(TooManyPixels, match="4 frames"):
        check_image(out.getvalue(), max_pixels=399)


def test_a_stored_image_is_encoded_again_without_what_followed_it() -> None:
    data = png_bytes(5, 4) + b"<script>trailing</script>"
    checked = check_image(data, max_pixels=100)
    encoded, described = reencode(data, checked)
    assert b"<script>" not in encoded
    assert (described.width, described.height, described.size_bytes) == (5, 4, len(encoded))
    assert check_image(encoded, max_pixels=100).sha256 == described.sha256
