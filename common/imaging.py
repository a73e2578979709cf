"""Bytes in, 8-bit RGB PIL image out, without torch: used by the workers (consumer/images.py),
the command-line classifier, training and the web viewer, so that all of them accept and
refuse the same images for the same reasons.

Bounds, checked before any pixel is decoded: only the formats the product supports
(Pillow would also open EPS through Ghostscript, BLP, AVIF, ...), the pixel count
(MAX_IMAGE_PIXELS) and the aspect ratio (MAX_IMAGE_ASPECT: a 1x8000 PNG of 117 bytes would
become a 256x2,048,000 tensor after the reference resize). Large decoded images are reduced
(integer box filter) before their colours are converted, so a 16-bit 60-megapixel PNG
never exists as a float array.

Colour rules: every image becomes 8-bit RGB. Transparent pixels (RGBA, LA, palette with
transparency) are composited on white, the usual background of catalog photos; 16-bit
images are scaled to 8 bits, not clipped; animated images use their first frame.
"""

from __future__ import annotations

import io
from pathlib import Path, PurePath

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.errors import ErrorType, ImageError

# decode() checks the pixel count against MAX_IMAGE_PIXELS from the settings, from the
# header, before decoding; Pillow's own process-wide limit would only get in its way.
Image.MAX_IMAGE_PIXELS = None

# What the product reads (the JPEG opener also yields MPO, Pillow's name for many phone photos);
# open() tries no other plugin, so EPS (Ghostscript), BLP, AVIF, ... are `not_an_image`.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"})
RESIZE_TO = 256  # the reference transform's shorter side


def is_image(path: PurePath) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def find_images(root: Path) -> list[Path]:
    """Every image file below root (recursive, any case of suffix), sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image(p))


# 16-bit value -> 8-bit, rounded (x * 255 / 65535): a lookup keeps a 60 MP image at 1 byte per
# pixel instead of the 4-8 a float array would take
_LUT_16_TO_8 = np.round(np.arange(65536, dtype=np.float64) * (255.0 / 65535.0)).astype(np.uint8)


def _16bit_to_8bit(img: Image.Image) -> Image.Image:
    if not img.mode.startswith("I;16"):
        return img
    arr = np.asarray(img)
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and np.little_endian is False):
        arr = arr.astype("<u2")
    return Image.fromarray(_LUT_16_TO_8[arr.astype(np.uint16, copy=False)], "L")


def to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    return img.convert("RGB")


def _reduce(img: Image.Image) -> Image.Image:
    """Shrink by an integer factor while the shorter side stays >= 2x the reference resize
    (the same margin as the JPEG draft): less memory and work for the colour conversion,
    and the reference resize still antialiases from twice its output size."""
    factor = min(img.size) // (2 * RESIZE_TO)
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except (ValueError, NotImplementedError):  # a mode reduce() does not support
        return img


def decode(data: bytes, max_pixels: int, fast: bool = False, max_aspect: float = 20.0) -> Image.Image:
    """Decode to RGB or raise ImageError; never any other exception.

    fast: let the JPEG decoder scale by 1/2, 1/4 or 1/8 in the DCT, and reduce other
    formats by an integer factor, while both sides stay >= 512 px. Much less work for large
    photos; top-1 agrees with the reference path on the dev photos (tests/consumer/test_images.py)."""
    if not data:
        raise ImageError(ErrorType.EMPTY, "the object has 0 bytes")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
        width, height = img.size
        if width * height > max_pixels:
            raise ImageError(ErrorType.TOO_LARGE, f"{width}x{height} pixels exceeds MAX_IMAGE_PIXELS={max_pixels}")
        if min(width, height) < 1 or max(width, height) / min(width, height) > max_aspect:
            raise ImageError(
                ErrorType.TOO_LARGE, f"{width}x{height} pixels: aspect ratio beyond MAX_IMAGE_ASPECT={max_aspect:g}"
            )
        if fast and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (2 * RESIZE_TO, 2 * RESIZE_TO))
        img.load()
        img = _16bit_to_8bit(img)
        if fast:
            img = _reduce(img)
        return to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(ErrorType.NOT_AN_IMAGE, f"not a supported image ({', '.join(FORMATS)})") from exc
    except MemoryError as exc:
        raise ImageError(ErrorType.TOO_LARGE, "decoding ran out of memory") from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's, never the batch's
        raise ImageError(ErrorType.CORRUPT, f"{type(exc).__name__}: {exc}"[:500]) from exc
