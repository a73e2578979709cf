"""Logins for the least-privilege worker role created by the migrations (vs_worker)."""
from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

WORKER_ROLE = "vs_worker"


def create_worker_login(conn: psycopg2.extensions.connection, name: str, password: str) -> None:
    """Create (or update the password of) a LOGIN user that is a member of vs_worker."""
    if not password:
        raise ValueError("an empty password is not allowed")
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,))
        verb = "ALTER" if cur.fetchone() else "CREATE"
        cur.execute(sql.SQL(verb + " ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)), (password,))
        cur.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(WORKER_ROLE), sql.Identifier(name)))
        cur.execute("SELECT current_database()")
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(cur.fetchone()[0]), sql.Identifier(name)))
