"""Upload a folder of images to S3 and register their keys in image_info.

    python upload.py DIR [--prefix P]
    python upload.py --register-only [--prefix P]

Every .jpg/.jpeg/.png/.webp/.gif/.bmp file under DIR (recursive, any case) is uploaded in
parallel as PREFIX + its path relative to DIR. Objects already in the bucket with the same
size are skipped, so a rerun is cheap and changes nothing. The bucket is S3_BUCKET, the one
the workers read (created if missing). Exit status 1 if any file failed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

from botocore.exceptions import ClientError
from tqdm import tqdm

from common.errors import ErrorType, classify_s3_error, s3_error_of
from common.imaging import find_images, is_image
from settings import Settings, get_settings


@dataclass
class UploadSummary:
    uploaded: int = 0
    skipped: int = 0
    failed: int = 0
    registered: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"uploaded {self.uploaded}, skipped {self.skipped}, failed {self.failed}; "
            f"{self.registered} new keys registered in image_info"
        )


def normalise_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def object_key(root: Path, path: Path, prefix: str) -> str:
    return normalise_prefix(prefix) + path.relative_to(root).as_posix()


def ensure_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        code, status = s3_error_of(exc)
        if code != "NoSuchBucket" and classify_s3_error(code, status) is not ErrorType.MISSING:
            raise
        s3.create_bucket(Bucket=bucket)


def existing_objects(s3, bucket: str, prefix: str) -> dict[str, int]:
    """key -> size of every object under prefix (paginated listing)."""
    found: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=normalise_prefix(prefix)):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["Size"]
    return found


def upload_dir(settings: Settings, root: Path, prefix: str = "", workers: Optional[int] = None) -> UploadSummary:
    """Into S3_BUCKET: workers read every key from that bucket (image_info holds keys only)."""
    from db.connection import connect
    from db.queries import register_images

    bucket = settings.s3_bucket
    s3 = settings.s3_client()
    ensure_bucket(s3, bucket)
    already = existing_objects(s3, bucket, prefix)
    summary = UploadSummary()
    to_register: list[tuple[str, int]] = []
    pending: list[tuple[Path, str, int]] = []
    for path in find_images(root):
        key, size = object_key(root, path, prefix), path.stat().st_size
        if already.get(key) == size:
            summary.skipped += 1
            to_register.append((key, size))
        else:
            pending.append((path, key, size))

    with (
        ThreadPoolExecutor(workers or settings.s3_max_concurrency) as pool,
        tqdm(total=len(pending), unit="img", desc=f"-> s3://{bucket}", disable=not sys.stderr.isatty()) as bar,
    ):
        futures = {
            pool.submit(s3.upload_file, str(path), bucket, key): (path, key, size) for path, key, size in pending
        }
        for fut in as_completed(futures):
            path, key, size = futures[fut]
            try:
                fut.result()
                summary.uploaded += 1
                to_register.append((key, size))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                summary.failed += 1
                summary.failures.append(f"{path}: {exc}")
            bar.update(1)

    conn = connect(settings)
    try:
        summary.registered = register_images(conn, sorted(to_register))
    finally:
        conn.close()
    return summary


def register_only(settings: Settings, prefix: str = "") -> UploadSummary:
    """Register the image keys already in S3_BUCKET (under prefix)."""
    from db.connection import connect
    from db.queries import register_images

    objects = existing_objects(settings.s3_client(), settings.s3_bucket, prefix)
    conn = connect(settings)
    try:
        rows = sorted((k, size) for k, size in objects.items() if is_image(PurePosixPath(k)))
        return UploadSummary(skipped=len(rows), registered=register_images(conn, rows))
    finally:
        conn.close()


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python upload.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("dir", nargs="?", type=Path, help="folder of images (recursive)")
    ap.add_argument("--prefix", default="", help="key prefix, e.g. 2024/batch1")
    ap.add_argument("--register-only", action="store_true", help="register keys already in the bucket")
    ap.add_argument("--workers", type=int, help="parallel uploads (default S3_MAX_CONCURRENCY)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = get_settings()
    if args.register_only:
        summary = register_only(settings, args.prefix)
    else:
        if args.dir is None or not args.dir.is_dir():
            ap.error(f"not a directory: {args.dir}")
        summary = upload_dir(settings, args.dir.resolve(), args.prefix, args.workers)
    for failure in summary.failures:
        print("failed:", failure, file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


if __name__ == "__main__":
    from common import cli

    cli.run(main)
