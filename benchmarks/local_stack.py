"""A benchmark's own stack: Kafka, PostgreSQL and versitygw (S3) on free ports in a temporary
directory, migrated, its settings exported to os.environ (so Settings() and the workers'
environment point at it), stopped and removed afterwards, data directories included, also
when the benchmark is stopped with SIGTERM (whose default action skips `finally`)."""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from common.imaging import find_images
from db.connection import connect
from db.migrate import migrate
from infra import stack
from infra.process import StackConfig
from settings import Settings
from upload import upload_dir


@contextmanager
def temporary_stack(prefix: str = "vs-bench-", secure: bool = False) -> Iterator[StackConfig]:
    """secure: `up --secure`'s stack, os.environ as its admin (benchmarks/secure.py)."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    cfg = stack.load_or_create(state, free_ports=True, secure=secure)
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        stack.up(cfg)
        os.environ.update(cfg.env())
        conn = connect(Settings(_env_file=None, database_url=cfg.database_url))
        try:
            migrate(conn)
        finally:
            conn.close()
        yield cfg
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        try:
            stack.discard(cfg)
        finally:
            signal.signal(signal.SIGTERM, previous)


def bench_settings(name: str, **fields) -> Settings:
    """A benchmark's settings on the stack of os.environ: a topic, consumer group and dead-letter
    topic of its own (`name` and a random tag), the bucket "bench"; `fields` override the rest."""
    tag = uuid.uuid4().hex[:6]
    return Settings(
        kafka_topic=f"{name}-{tag}",
        faust_app_id=f"{name}-{tag}",
        s3_bucket="bench",
        kafka_dead_letter_topic=f"{name}-dead-{tag}",
        **fields,
    )


def dev_photos(settings: Settings) -> Path:
    """../shared's labelled dev photos, or exit with a line saying where they were looked for."""
    dev = settings.shared_dir / "images" / "dev"
    if not dev.is_dir():
        sys.exit(f"no photos at {dev}: set SHARED_DIR")
    return dev


def upload_copies(settings: Settings, dev: Path, keys: int) -> None:
    """The dev photos uploaded under prefixes copy0, copy1, ... until there are at least `keys`
    distinct keys (every run sends keys of its own)."""
    for i in range(math.ceil(keys / len(find_images(dev)))):
        upload_dir(settings, dev, prefix=f"copy{i}")


def worker_counts(text: str) -> list[int]:
    """argparse type for "4,8,16": fleet sizes, each at least 1."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of worker counts: {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"worker counts must be 1 or more: {text!r}")
    return sizes
