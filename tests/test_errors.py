"""The error vocabulary: S3 and PostgreSQL failures told apart by what they mean, and one base
class for the project's own exceptions."""

import ast
import builtins
from pathlib import Path

import psycopg2
import pytest

from common.errors import ERROR_TYPES, ErrorType, backoff, classify_s3_error, pg_error_is_transient

REPO = Path(__file__).resolve().parent.parent
SOURCES = (
    "settings.py",
    "upload.py",
    "common",
    "db",
    "producer",
    "consumer",
    "viewer",
    "training",
    "infra",
    "benchmarks",
)
# SettingsError is a SystemExit: a command's clean stop, which `except Exception` must not catch
NOT_PROJECT_ERRORS = {"SettingsError"}


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


def _base_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _classes() -> dict[str, tuple[str, list[str]]]:
    """Every class the project defines: name -> (where, names of its bases)."""
    files = [p for s in SOURCES for p in ((REPO / s).rglob("*.py") if (REPO / s).is_dir() else [REPO / s])]
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                found[node.name] = (str(path.relative_to(REPO)), [_base_name(b) for b in node.bases])
    return found


def test_every_project_exception_derives_from_vision_scaling_error():
    classes = _classes()

    def is_exception(name: str) -> bool:
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, BaseException):
            return True
        return name in classes and any(is_exception(b) for b in classes[name][1]) or name.endswith("Error")

    def is_ours(name: str) -> bool:
        return name == "VisionScalingError" or name in classes and any(is_ours(b) for b in classes[name][1])

    outside = [
        f"{where}: {name}"
        for name, (where, bases) in classes.items()
        if name != "VisionScalingError"
        and name not in NOT_PROJECT_ERRORS
        and any(is_exception(b) for b in bases)
        and not is_ours(name)
    ]
    assert outside == []


def test_project_exceptions_keep_the_builtin_base_their_callers_catch():
    from common.errors import ImageError, TransientError, VisionScalingError

    error = ImageError(ErrorType.CORRUPT, "x")
    assert isinstance(error, VisionScalingError) and isinstance(error, ValueError)
    assert issubclass(TransientError, RuntimeError) and issubclass(TransientError, VisionScalingError)
