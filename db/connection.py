"""Opening PostgreSQL connections from the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from settings import Settings


def connect(settings: Settings, **kwargs) -> psycopg2.extensions.connection:
    """A new connection to DATABASE_URL (sslmode and password may be part of the URL)."""
    return psycopg2.connect(settings.database_url, connect_timeout=10, **kwargs)


T = TypeVar("T")


def in_transaction(settings: Settings, fn: Callable[[psycopg2.extensions.connection], T]) -> T:
    """fn(conn) in one transaction on a connection of its own, closed afterwards: for the
    one-off reads of the CLIs and the workers' registry polls."""
    conn = connect(settings)
    try:
        with conn:
            return fn(conn)
    finally:
        conn.close()
