"""Keys from listing the bucket: the safety net under live ingestion.

S3 event notifications can be lost (an S3 server restarted with events pending, a
connector down past its retention), so `python -m producer --from-bucket --only-missing`
lists the bucket (ListObjectsV2, one page of 1,000 keys at a time: constant memory on
millions of keys), registers what it finds in image_info, and sends the keys that still
have no current row: none for the production version, one marked deleted, or one computed
from another eTag (an overwrite whose event was lost). Users run it on a schedule and after
an outage (the chart's reconciliation CronJob).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

from common.errors import TransientError
from settings import Settings


def list_pages(settings: Settings, prefix: str = "", page_size: int = 1000) -> Iterator[list[tuple[str, int, str]]]:
    """(key, size, eTag) per page of S3_BUCKET's listing under `prefix`, in key order."""
    import botocore.exceptions

    paginator = settings.s3_client().get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=settings.s3_bucket, Prefix=prefix, PaginationConfig={"PageSize": page_size})
    try:
        for page in pages:
            # a key ending in "/" is a folder marker (consoles make them, versitygw lists its
            # directories so): never an image
            objects = [o for o in page.get("Contents", []) if not o["Key"].endswith("/")]
            yield [(o["Key"], o.get("Size"), (o.get("ETag") or "").strip('"') or None) for o in objects]
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise TransientError(f"cannot list s3://{settings.s3_bucket}/{prefix}: {code or exc}") from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise TransientError(f"cannot list s3://{settings.s3_bucket}/{prefix}: {exc}") from exc


def bucket_keys(
    settings: Settings, conn, prefix: str = "", only_missing_version: Optional[int] = None, limit: Optional[int] = None
) -> Iterator[str]:
    """Keys to send, page by page: every listed key, or with only_missing_version N only those
    with no current row for MODEL_NAME at version N or later. Each page is registered first."""
    from db.events import missing, register_listed

    sent = 0
    for page in list_pages(settings, prefix):
        register_listed(conn, page)
        keys = (
            [k for k, _, _ in page]
            if only_missing_version is None
            else missing(conn, [(k, e) for k, _, e in page], settings.model_name, only_missing_version)
        )
        for key in keys:
            if limit is not None and sent >= limit:
                return
            sent += 1
            yield key
