"""Bytes in, 8-bit RGB PIL image out, without torch: the pixel limit checked from the
header before decoding, then the colour rules. Used by the workers (consumer/images.py) and
the web viewer.

Colour rules: every image becomes 8-bit RGB. Transparent pixels (RGBA, LA, palette with
transparency) are composited on white, the usual background of catalog photos; 16-bit
images are scaled to 8 bits, not clipped; animated images use their first frame.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

# decode() checks the pixel count against MAX_IMAGE_PIXELS from the settings, from the
# header, before decoding; Pillow's own process-wide limit would only get in its way.
Image.MAX_IMAGE_PIXELS = None


class ImageError(ValueError):
    """An image that cannot be classified; error_type goes to prediction_errors."""

    def __init__(self, error_type: str, detail: str):
        super().__init__(f"{error_type}: {detail}")
        self.error_type = error_type
        self.detail = detail


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


RESIZE_TO = 256  # the reference transform's shorter side


def decode(data: bytes, max_pixels: int, fast: bool = False) -> Image.Image:
    """Decode to RGB, refusing an image whose header claims more than max_pixels
    before any pixel is decoded (decompression bombs).

    fast: let the JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT while both sides stay
    >= 512 px, twice what the reference resize goes down to (the margin keeps the resize's
    antialiasing close to the reference). 2-3x less work for large photos; top-1 agrees
    with the reference path on 100% of the dev photos (tests/consumer/test_images.py)."""
    if not data:
        raise ImageError("empty", "the object has 0 bytes")
    try:
        img = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > max_pixels:
            raise ImageError("too_large", f"{width}x{height} pixels exceeds MAX_IMAGE_PIXELS={max_pixels}")
        if fast and img.format == "JPEG":
            img.draft(img.mode, (2 * RESIZE_TO, 2 * RESIZE_TO))
        img.load()
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError("not_an_image", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError("corrupt", f"{type(exc).__name__}: {exc}") from exc
    return to_rgb(img)
