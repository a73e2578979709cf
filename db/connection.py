"""Opening PostgreSQL connections from the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import psycopg2
import psycopg2.extensions

from common.errors import ServiceUnreachable
from settings import Settings


class DatabaseUnreachable(ServiceUnreachable, psycopg2.OperationalError):
    """PostgreSQL could not be connected to. Still a psycopg2.OperationalError, which the
    workers treat as an outage and retry; a command prints its one-line message."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


# what libpq says -> (kind, what to check); the first match wins
_CAUSES = (
    ("password authentication failed", "auth", "the password was refused; check the user and password in DATABASE_URL"),
    ("certificate verify failed", "tls", "the server's certificate is not signed by the CA in sslrootcert "
     "(or is for another name); check sslrootcert in DATABASE_URL"),
    ("does not match host name", "tls", "the server's certificate is for another name; connect by a name it holds"),
    ("no encryption", "tls", "the server accepts only TLS: add sslmode=verify-full&sslrootcert=CA to DATABASE_URL"),
    ("server does not support SSL", "tls", "the server does not speak TLS but DATABASE_URL's sslmode asks for it"),
    ("root certificate file", "tls", "sslrootcert names no readable file; check DATABASE_URL"),
    ("Connection refused", "refused", "connection refused (nothing listening there); is PostgreSQL running "
     "(`python -m infra.stack up` starts the local stack), and is the address right?"),
    ("could not translate host name", "refused", "the host name does not resolve; check DATABASE_URL for a typo"),
    ("timeout expired", "refused", "no answer within 10 s; check the address and any firewall"),
)  # fmt: skip


def describe(settings: Settings, exc: psycopg2.OperationalError) -> tuple[str, str]:
    """(one-line message, kind) for a failed connection: where (never the password) and why."""
    try:
        dsn = psycopg2.extensions.parse_dsn(settings.database_url)
    except psycopg2.ProgrammingError:
        return "DATABASE_URL is not a valid PostgreSQL URL", "other"
    where = f"PostgreSQL at {dsn.get('host', 'localhost')}:{dsn.get('port', 5432)}/{dsn.get('dbname', '')}"
    who = f" as {dsn['user']}" if dsn.get("user") else ""
    text = str(exc)
    for needle, kind, advice in _CAUSES:
        if needle in text:
            return f"cannot connect to {where}{who} (DATABASE_URL): {advice}", kind
    first = next((line.strip() for line in text.splitlines() if line.strip()), "no answer")
    return f"cannot connect to {where}{who} (DATABASE_URL): {first[:300]}", "other"


def connect(settings: Settings, **kwargs) -> psycopg2.extensions.connection:
    """A new connection to DATABASE_URL (sslmode and password may be part of the URL); a
    failure to connect is a DatabaseUnreachable saying where and why in one line."""
    try:
        return psycopg2.connect(settings.database_url, connect_timeout=10, **kwargs)
    except DatabaseUnreachable:
        raise
    except psycopg2.OperationalError as exc:
        raise DatabaseUnreachable(*describe(settings, exc)) from exc


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
