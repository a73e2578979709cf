"""One object from S3, for one image: its bytes, or the reason this key can never give any
(an ImageError row), or a TransientError when S3 itself is the problem (the batch retries)."""

from __future__ import annotations

from typing import Union

import botocore.exceptions

from common.errors import ErrorType, ImageError, TransientError, classify_s3_error, s3_error_of


def fetch_image(s3, bucket: str, key: str, max_bytes: int) -> Union[bytes, ImageError]:
    try:
        obj = s3.get_object(Bucket=bucket, Key=key)
        size = obj.get("ContentLength")
        if size is not None and size > max_bytes:
            obj["Body"].close()  # never read what is over the limit
            return ImageError(ErrorType.TOO_LARGE, f"{size} bytes exceeds MAX_IMAGE_BYTES={max_bytes}")
        return obj["Body"].read()
    except botocore.exceptions.ClientError as exc:
        code, status = s3_error_of(exc)
        kind = classify_s3_error(code, status)
        if kind is None:
            raise TransientError(f"S3 error {code or status} for {key[:200]!r}: {exc}") from exc
        if kind is ErrorType.MISSING:
            return ImageError(kind, f"s3://{bucket}/{key} does not exist")
        return ImageError(kind, f"S3 answered {status} {code or '(no code)'}")
    except (botocore.exceptions.BotoCoreError, OSError) as exc:
        raise TransientError(f"S3 unreachable: {exc}") from exc
