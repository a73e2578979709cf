"""Images for the browser: fetched from S3, decoded with the same pixel limit as the workers,
and always re-encoded as JPEG — the viewer never serves an object's bytes (or its content
type) as they are, so an uploaded HTML or SVG file cannot run in the viewer's origin."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict

from botocore.exceptions import BotoCoreError, ClientError
from PIL import ImageOps

from consumer.decoding import ImageError, decode

SIZES = (160, 320, 1024)  # thumbnail grid, retina grid, image page


class ThumbnailError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def render(data: bytes, size: int, max_pixels: int) -> bytes:
    """`data` (any format Pillow reads) as a JPEG no larger than size×size, decoded as the
    workers decode it (pixel limit from the header, alpha on white, 16-bit scaled)."""
    try:
        img = decode(data, max_pixels, fast=True)
    except ImageError as exc:
        raise ThumbnailError(422, str(exc)) from exc
    img = ImageOps.exif_transpose(img)
    img.thumbnail((size, size))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


class Thumbnails:
    """Rendered images by (key, size), the most recent `cache_size` of them kept in memory."""

    def __init__(self, s3, bucket: str, max_pixels: int, cache_size: int):
        self._s3, self._bucket, self._max_pixels = s3, bucket, max_pixels
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def get(self, key: str, size: int) -> bytes:
        if size not in SIZES:
            raise ThumbnailError(400, f"size must be one of {SIZES}")
        with self._lock:
            if (key, size) in self._cache:
                self._cache.move_to_end((key, size))
                return self._cache[(key, size)]
        jpeg = render(self._fetch(key), size, self._max_pixels)
        with self._lock:
            self._cache[(key, size)] = jpeg
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return jpeg

    def _fetch(self, key: str) -> bytes:
        try:
            return self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ThumbnailError(404, f"no object {key!r} in bucket {self._bucket}") from exc
            raise ThumbnailError(502, f"S3 error: {code or exc}") from exc
        except BotoCoreError as exc:
            raise ThumbnailError(503, f"S3 request failed: {exc}") from exc
