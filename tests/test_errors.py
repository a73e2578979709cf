"""The error vocabulary: S3 and PostgreSQL failures told apart by what they mean."""

import psycopg2
import pytest

from common.errors import ERROR_TYPES, ErrorType, backoff, classify_s3_error, pg_error_is_transient


@pytest.mark.parametrize(
    "code,status,expected",
    [
        ("NoSuchKey", 404, ErrorType.MISSING),
        ("", 404, ErrorType.MISSING),
        ("AccessDenied", 403, ErrorType.ACCESS_DENIED),  # one object's ACL: this key only
        ("", 414, ErrorType.BAD_KEY),  # a 900 KB key
        ("", 400, ErrorType.BAD_KEY),  # '../other-bucket/x.png': an error with no code
        ("KeyTooLongError", 400, ErrorType.BAD_KEY),
        ("InvalidAccessKeyId", 403, None),  # credentials: every key would fail -> retry
        ("SignatureDoesNotMatch", 403, None),
        ("NoSuchBucket", 404, None),  # configuration, not this key
        ("SlowDown", 503, None),
        ("InternalError", 500, None),
        ("", 429, None),
        ("", None, None),
    ],
)
def test_s3_errors_are_classified_by_meaning(code, status, expected):
    assert classify_s3_error(code, status) == expected


class _PgError(psycopg2.OperationalError):
    def __init__(self, pgcode):
        super().__init__("x")
        self._code = pgcode

    @property
    def pgcode(self):
        return self._code


def test_postgres_errors_about_rows_are_not_transient():
    assert pg_error_is_transient(_PgError(None))  # no answer: connection lost
    assert pg_error_is_transient(_PgError("08006"))  # connection failure
    assert pg_error_is_transient(_PgError("57P01"))  # admin shutdown
    assert pg_error_is_transient(_PgError("40P01"))  # deadlock: retry
    assert not pg_error_is_transient(_PgError("54000"))  # index row too large (a long key)
    assert not pg_error_is_transient(_PgError("22021"))  # bad encoding in a value


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(a, 4.0) for a in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert backoff(10_000, 30.0) == 30.0  # no overflow however long an outage lasts


def test_the_database_check_constraint_lists_exactly_the_error_types():
    from db.migrate import MIGRATIONS_DIR

    sql = (MIGRATIONS_DIR / "0004_error_types.sql").read_text()
    listed = sql[sql.index("CHECK (error_type IN (") :]
    assert sorted(t.strip(" '\n") for t in listed.split("(", 2)[2].split(")")[0].split(",")) == sorted(ERROR_TYPES)
