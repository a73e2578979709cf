"""A benchmark's own stack: Kafka, PostgreSQL and versitygw (S3) on free ports in a temporary
directory, migrated, its settings exported to os.environ (so Settings() and the workers'
environment point at it), stopped and removed afterwards, data directories included, also
when the benchmark is stopped with SIGTERM (whose default action skips `finally`)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from db.connection import connect
from db.migrate import migrate
from infra import stack
from infra.process import StackConfig
from settings import Settings


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
