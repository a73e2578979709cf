"""Image bytes of every awkward kind, made in memory for tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo_like(size=(320, 240), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


def grayscale_jpeg() -> bytes:
    return encode(photo_like(mode="L"), "JPEG")


def cmyk_jpeg() -> bytes:
    return encode(photo_like(mode="CMYK"), "JPEG")


def transparent_png(color=(255, 0, 0)) -> bytes:
    """Fully transparent pixels of `color`: must come out white."""
    return encode(Image.new("RGBA", (300, 300), (*color, 0)), "PNG")


def png_16bit(value: int) -> bytes:
    return encode(Image.fromarray(np.full((300, 300), value, dtype=np.uint16)), "PNG")


def palette_gif_animated() -> bytes:
    frames = [Image.new("P", (260, 260), i * 40) for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], transparency=0)


def one_pixel_png() -> bytes:
    return encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG")


def truncated_jpeg() -> bytes:
    data = encode(photo_like(), "JPEG")
    return data[: len(data) // 3]


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels but holds almost no data:
    a decoder that trusted it would allocate gigabytes."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png_16bit_huge(side: int = 7700) -> bytes:
    """A 16-bit grayscale PNG of side x side (59 MP at 7700, under the default pixel limit) that
    compresses to ~100 KB: decoded naively (16-bit -> float64 -> RGB) it took gigabytes."""
    return encode(Image.fromarray(np.full((side, side), 40000, dtype=np.uint16)), "PNG")


def png_sliver(width: int = 1, height: int = 8000) -> bytes:
    """A 1 x 8000 PNG of ~100 bytes: the reference resize would make it 256 x 2,048,000."""
    return encode(Image.new("RGB", (width, height), (10, 200, 10)), "PNG")


def blp_odd() -> bytes:
    """A small file with a BLP header and an unknown compression field (Pillow raised
    BLPFormatError / NotImplementedError from it)."""
    return b"BLP2" + struct.pack("<IBBBB", 1, 9, 8, 8, 0) + struct.pack("<II", 16, 16) + bytes(200)


def avif_damaged() -> bytes:
    """An ISO-BMFF `ftyp avif` box followed by garbage (a damaged AVIF raised RuntimeError)."""
    return struct.pack(">I", 24) + b"ftypavif" + b"\0\0\0\0" + b"avifmif1" + bytes(range(256)) * 4


def eps() -> bytes:
    """Encapsulated PostScript: Pillow opens it through Ghostscript when that is installed."""
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n%%EOF\n"
