"""Images for the browser: fetched from S3, decoded with the same pixel limit as the workers,
and always re-encoded as JPEG — the viewer never serves an object's bytes (or its content
type) as they are, so an uploaded HTML or SVG file cannot run in the viewer's origin."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from botocore.exceptions import BotoCoreError, ClientError
from PIL import ImageOps

from common.errors import ErrorType, ImageError, VisionScalingError, classify_s3_error, s3_error_of
from common.imaging import decode

SIZES = (160, 320, 1024)  # thumbnail grid, retina grid, image page


class ThumbnailError(VisionScalingError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_STATUS = {ErrorType.MISSING: 404, ErrorType.ACCESS_DENIED: 403, ErrorType.BAD_KEY: 400}


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

    def __init__(self, s3, bucket: str, max_pixels: int, cache_size: int, max_bytes: int = 50_000_000):
        self._s3, self._bucket, self._max_pixels, self._max_bytes = s3, bucket, max_pixels, max_bytes
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
            obj = self._s3.get_object(Bucket=self._bucket, Key=key)
            if obj.get("ContentLength", 0) > self._max_bytes:  # never read what is over the limit
                obj["Body"].close()
                raise ThumbnailError(422, f"the object is over MAX_IMAGE_BYTES={self._max_bytes}")
            return obj["Body"].read()
        except ClientError as exc:
            kind = classify_s3_error(*s3_error_of(exc))
            if kind is None:  # the details are for the log, not for the page
                raise ThumbnailError(503, "the image store is unavailable") from exc
            raise ThumbnailError(_STATUS.get(kind, 404), f"no image for this key ({kind})") from exc
        except BotoCoreError as exc:
            raise ThumbnailError(503, "the image store is unavailable") from exc
