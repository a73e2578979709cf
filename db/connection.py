"""Opening PostgreSQL connections from the settings."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions

from settings import Settings


def connect(settings: Settings, **kwargs) -> psycopg2.extensions.connection:
    """A new connection to DATABASE_URL (sslmode and password may be part of the URL)."""
    return psycopg2.connect(settings.database_url, connect_timeout=10, **kwargs)
