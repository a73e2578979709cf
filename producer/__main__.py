"""python -m producer — stream image keys into Kafka.

Keys come from PostgreSQL's image_info (read in keyset pages, so millions of keys never
sit in memory), from listing the bucket (--from-bucket: the reconciliation under live
ingestion from S3 notifications, producer/bucket.py), or from standard input, one key per
line (--stdin).
Exit status: 0 when every key was delivered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from typing import Optional

from tqdm import tqdm

from common.errors import TransientError
from common.kafka_admin import ensure_topic
from common.reach import Unreachable, check_kafka
from producer.publish import KeyPublisher
from settings import get_settings

MAX_KEY_BYTES = 1024  # S3's key limit: a longer line cannot name an object


class SkippedLines:
    """Lines of standard input that cannot be a key: reported one by one (the first few) and counted."""

    def __init__(self, shown: int = 5):
        self.count, self.shown = 0, shown

    def skip(self, lineno: int, why: str) -> None:
        self.count += 1
        if self.count <= self.shown:
            print(f"skipped line {lineno}: {why}", file=sys.stderr)


def stdin_keys(stream=None, skipped: Optional[SkippedLines] = None) -> Iterator[str]:
    """Keys from lines (bytes or text); a line that is not UTF-8 or longer than S3 allows is
    skipped with a message, never the end of the run."""
    stream = stream if stream is not None else getattr(sys.stdin, "buffer", sys.stdin)
    skipped = skipped if skipped is not None else SkippedLines()
    for lineno, line in enumerate(stream, 1):
        raw = line if isinstance(line, bytes) else line.encode("utf-8", errors="surrogateescape")
        raw = raw.rstrip(b"\r\n")
        if not raw:
            continue
        if len(raw) > MAX_KEY_BYTES:
            skipped.skip(lineno, f"{len(raw)} bytes, over S3's {MAX_KEY_BYTES}-byte key limit")
            continue
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            skipped.skip(lineno, f"not UTF-8 ({exc.reason} at byte {exc.start})")
            continue
        if "\x00" in key:
            skipped.skip(lineno, "contains a NUL byte")
            continue
        yield key


def _production_version(conn, settings) -> int:
    """For --only-missing: a registered model's production version (rows of older versions
    are sent again, to be re-classified); 0 for a built-in model."""
    if settings.builtin_model:
        return 0
    from db.registry import serving

    with conn:
        production, _ = serving(conn, settings.model_name)
    if production is None:
        raise SystemExit(f"error: MODEL_NAME={settings.model_name} has no production version in the registry")
    return production.version


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m producer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--only-missing",
        action="store_true",
        help="only keys with no result and no error row for MODEL_NAME, or (a model of your own) "
        "whose result was written by a version older than the production one",
    )
    ap.add_argument("--limit", type=int, help="send at most N keys")
    ap.add_argument("--rate", type=float, help="send at most R keys per second (simulates a live stream)")
    source = ap.add_mutually_exclusive_group()
    source.add_argument("--stdin", action="store_true", help="read keys from standard input, one per line")
    source.add_argument(
        "--from-bucket",
        action="store_true",
        help="list S3_BUCKET (registering what it finds) instead of reading image_info; with "
        "--only-missing, the reconciliation to run on a schedule and after an outage",
    )
    ap.add_argument("--prefix", default="", help="with --from-bucket: only keys under this prefix")
    ap.add_argument(
        "--create-topic",
        action="store_true",
        help="create KAFKA_TOPIC (KAFKA_PARTITIONS partitions) if missing and send nothing: for a "
        "deployment's set-up, before an S3 server publishes its events to the topic",
    )
    args = ap.parse_args(argv)
    if args.prefix and not args.from_bucket:
        ap.error("--prefix needs --from-bucket")
    sending = [args.only_missing, args.limit is not None, args.rate is not None, args.stdin, args.from_bucket]
    if args.create_topic and any(sending):
        ap.error("--create-topic sends nothing: it takes none of the options that choose what to send")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    try:
        check_kafka(settings)
    except Unreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    partitions = ensure_topic(settings)
    if args.create_topic:
        print(f"topic {settings.kafka_topic}: {partitions} partitions")
        return 0
    total: Optional[int] = None
    conn = None
    skipped = SkippedLines()
    try:
        if args.stdin:
            keys: Iterator[str] = stdin_keys(skipped=skipped)
        elif args.from_bucket:
            from db.connection import connect
            from producer.bucket import bucket_keys

            conn = connect(settings)
            version = _production_version(conn, settings) if args.only_missing else None
            keys = bucket_keys(settings, conn, args.prefix, version, args.limit)
        else:
            from db.connection import connect
            from db.queries import count_images, iter_image_keys

            conn = connect(settings)
            if not args.only_missing:
                total = count_images(conn)
                total = min(total, args.limit) if args.limit is not None else total
            version = _production_version(conn, settings) if args.only_missing else 0
            keys = iter_image_keys(
                conn,
                missing_for_model=settings.model_name if args.only_missing else None,
                older_than_version=version,
                limit=args.limit,
            )
        if args.stdin and args.limit is not None:  # the other sources apply it themselves
            keys = (k for i, k in zip(range(args.limit), keys))

        publisher = KeyPublisher(settings)
        started = time.monotonic()
        with tqdm(
            total=total,
            unit="key",
            desc=f"-> {settings.kafka_topic} ({partitions} partitions)",
            disable=not sys.stderr.isatty(),
        ) as bar:
            report = publisher.send_all(keys, rate=args.rate, progress=bar)
    finally:
        if conn is not None:
            conn.close()
    report.skipped = skipped.count
    print(report.summary(time.monotonic() - started))
    for err in report.first_errors:
        print("  delivery failed:", err, file=sys.stderr)
    return 0 if report.failed == 0 and report.undelivered == 0 else 1


def run(argv: Optional[list[str]] = None) -> int:
    """main(), with the outages a user can meet (S3 or PostgreSQL unreachable, a missing
    bucket) as one line instead of a traceback."""
    try:
        return main(argv)
    except TransientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from common import cli

    cli.run(run)
