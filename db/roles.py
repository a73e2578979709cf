"""Logins for the least-privilege roles created by the migrations: vs_worker (read image_info,
write results and errors), vs_viewer (reads the pipeline's tables, writes its accounts and
labels) and vs_trainer (reads embeddings and labels, writes the model registry)."""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

WORKER_ROLE = "vs_worker"
VIEWER_ROLE = "vs_viewer"
TRAINER_ROLE = "vs_trainer"


def create_login(conn: psycopg2.extensions.connection, name: str, password: str, role: str) -> None:
    """Create (or update the password of) a LOGIN user that is a member of `role`."""
    if not password:
        raise ValueError("an empty password is not allowed")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (password,))
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(role), sql.Identifier(name)))
        cur.execute("SELECT current_database()")
        cur.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(cur.fetchone()[0]), sql.Identifier(name)
            )
        )


def create_worker_login(conn: psycopg2.extensions.connection, name: str, password: str) -> None:
    create_login(conn, name, password, WORKER_ROLE)


def create_viewer_login(conn: psycopg2.extensions.connection, name: str, password: str) -> None:
    create_login(conn, name, password, VIEWER_ROLE)
