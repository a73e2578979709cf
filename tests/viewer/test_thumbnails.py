"""Rendering images for the browser (no services)."""

import io

import pytest
from PIL import Image

from tests.consumer import images_zoo as zoo
from viewer.thumbnails import ThumbnailError, render


def decoded(jpeg: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(jpeg))
    img.load()
    return img


def test_a_photo_becomes_a_small_jpeg(dev_images):
    photo = sorted(dev_images.glob("*.JPEG"))[0].read_bytes()
    img = decoded(render(photo, 160, 60_000_000))
    assert img.format == "JPEG" and img.mode == "RGB"
    assert max(img.size) == 160


def test_transparent_pixels_are_white_and_palette_gifs_render():
    transparent = Image.new("RGBA", (50, 50), (255, 0, 0, 0))
    img = decoded(render(zoo.encode(transparent, "PNG"), 160, 10_000))
    assert all(c > 240 for c in img.getpixel((25, 25)))  # white, not black or red
    assert decoded(render(zoo.encode(zoo.photo_like().convert("P"), "GIF"), 160, 10**6)).mode == "RGB"


def test_images_over_the_pixel_limit_are_refused_before_decoding():
    with pytest.raises(ThumbnailError, match="100x100 pixels exceeds MAX_IMAGE_PIXELS=1000") as info:
        render(zoo.encode(Image.new("RGB", (100, 100)), "PNG"), 160, 1000)
    assert info.value.status == 422


@pytest.mark.parametrize("data", [b"", b"<svg onload=alert(1)>", b"\xff\xd8\xff\xe0 truncated"])
def test_what_is_not_an_image_is_a_422_not_a_crash(data):
    with pytest.raises(ThumbnailError) as info:
        render(data, 160, 10**6)
    assert info.value.status == 422


def test_16_bit_images_are_scaled_like_the_workers_scale_them():
    grey = Image.new("I;16", (40, 40), 32768)  # mid-grey in 16 bits; clipping would give white
    pixel = decoded(render(zoo.encode(grey, "PNG"), 160, 10**6)).getpixel((20, 20))
    assert all(120 <= c <= 136 for c in pixel), pixel
