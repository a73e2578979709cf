"""Bytes PostgreSQL writes to its write-ahead log during a run: every row, index entry and
TOAST chunk goes through it, so it is what storing a batch costs the disk."""

from __future__ import annotations

from db.connection import connect
from settings import Settings


def wal_position(settings: Settings) -> str:
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            return cur.fetchone()[0]
    finally:
        conn.close()


def wal_since(settings: Settings, position: str) -> int:
    """Bytes PostgreSQL wrote to its write-ahead log since `position` (every row, index and
    TOAST write goes through it: what storing a batch costs the disk)."""
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint", (position,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()
