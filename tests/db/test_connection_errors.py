"""db.connection.describe: why a connection failed, in one line, never the password (unit)."""

from __future__ import annotations

import psycopg2
import pytest

from db.connection import DatabaseUnreachable, describe
from settings import Settings

URL = "postgresql://alice:hunter2-secret@db.example:6543/shop?sslmode=verify-full&sslrootcert=/ca.pem"


@pytest.mark.parametrize(
    "libpq, kind, advice",
    [
        ('FATAL:  password authentication failed for user "alice"', "auth", "password was refused"),
        ("SSL error: certificate verify failed", "tls", "sslrootcert"),
        ('FATAL:  pg_hba.conf rejects connection for host "1.2.3.4", no encryption', "tls", "accepts only TLS"),
        ("connection to server ... failed: Connection refused\n\tIs the server running", "refused", "refused"),
        ('could not translate host name "db.example" to address', "refused", "does not resolve"),
        ('FATAL:  database "shop" does not exist', "other", 'database "shop" does not exist'),
    ],
)
def test_the_cause_and_the_address_without_the_password(libpq, kind, advice):
    message, found = describe(Settings(_env_file=None, database_url=URL), psycopg2.OperationalError(libpq))
    assert found == kind and advice in message
    assert "PostgreSQL at db.example:6543/shop as alice (DATABASE_URL)" in message
    assert "hunter2" not in message and "\n" not in message


def test_a_failed_connection_is_still_an_operational_error_for_the_workers_retries():
    exc = DatabaseUnreachable("cannot connect", "refused")
    assert isinstance(exc, psycopg2.OperationalError) and exc.pgcode is None


def test_connect_says_where_and_why_when_nothing_listens():
    from db.connection import connect

    secret = "not-printed-anywhere"
    with pytest.raises(DatabaseUnreachable) as failed:
        connect(Settings(_env_file=None, database_url=f"postgresql://u:{secret}@127.0.0.1:1/db"))
    assert failed.value.kind == "refused" and "PostgreSQL at 127.0.0.1:1/db as u" in str(failed.value)
    assert secret not in str(failed.value)
