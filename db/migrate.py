"""Apply db/migrations/*.sql in order, each once, recorded in schema_migrations.

Safe to run any number of times and from several machines at once (an advisory lock
serialises concurrent runs).
"""

from __future__ import annotations

from pathlib import Path

import psycopg2.extensions

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_ID = 7_404_221  # arbitrary, constant: the advisory lock every migrate run takes


def migration_files() -> list[Path]:
    return sorted(MIGRATIONS_DIR.glob("*.sql"))


def migrate(conn: psycopg2.extensions.connection) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    applied_now = []
    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
        cur.execute("""CREATE TABLE IF NOT EXISTS schema_migrations (
                           name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""")
        cur.execute("SELECT name FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for path in migration_files():
            if path.name in done:
                continue
            cur.execute(path.read_text())
            cur.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (path.name,))
            applied_now.append(path.name)
    return applied_now
