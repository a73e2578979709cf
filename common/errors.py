"""The error vocabulary: what can go wrong with one image, how S3 and PostgreSQL failures
are told apart (this key can never work vs the service is down), and the retry backoff.

`ErrorType` values are a contract between the workers, the `prediction_errors.error_type`
CHECK constraint (db/migrations/0004), the metrics' labels and the viewer's filters.
"""

from __future__ import annotations

import enum
from typing import Optional


class ErrorType(str, enum.Enum):
    MISSING = "missing"  # the object does not exist
    ACCESS_DENIED = "access_denied"  # S3 refuses this one object (its ACL or policy)
    BAD_KEY = "bad_key"  # S3 or PostgreSQL cannot handle the key itself
    EMPTY = "empty"  # a zero-byte object
    TOO_LARGE = "too_large"  # over MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS or a decode bound
    NOT_AN_IMAGE = "not_an_image"  # no supported image format recognised
    CORRUPT = "corrupt"  # a supported format whose bytes do not decode
    BAD_MESSAGE = "bad_message"  # the Kafka message carries no usable key
    INTERNAL = "internal"  # a bug: the batch failed repeatedly for no known reason

    def __str__(self) -> str:
        return self.value


ERROR_TYPES: tuple[str, ...] = tuple(t.value for t in ErrorType)


class VisionScalingError(Exception):
    """The base of every exception the project defines, so that a caller can tell the
    project's own errors from a library's. Each subclass also keeps the built-in base its
    callers catch (ValueError, RuntimeError)."""


class ImageError(VisionScalingError, ValueError):
    """One image that cannot be classified; a row in prediction_errors, never a batch failure."""

    def __init__(self, error_type: ErrorType, detail: str):
        self.error_type = ErrorType(error_type)
        self.detail = detail
        super().__init__(f"{self.error_type.value}: {detail}")


class ServiceUnreachable(VisionScalingError):
    """A service a command needs (Kafka, PostgreSQL, S3) cannot be reached or refuses it; the
    message is one line naming the service, its address and what to check, never a secret.
    `kind`: "refused" (nothing answers), "auth" (credentials), "tls" (certificates, or TLS
    missing on one side), "denied" (an ACL) or "other"."""

    kind: str = "other"


class TransientError(VisionScalingError, RuntimeError):
    """A service is unreachable or overloaded: the whole batch is retried, nothing is acked."""


# --------------------------------------------------------------------------- S3

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({"AccessDenied", "403", "Forbidden"})
# Answers about the request's credentials, clock, bucket or the service itself: every key
# would get the same answer, so they are outages (retry, alert), not facts about one key.
_SERVICE_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidToken",
        "RequestTimeTooSkewed",
        "AccountProblem",
        "AllAccessDisabled",
        "NoSuchBucket",
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "503",
        "500",
        "502",
        "504",
    }
)


def classify_s3_error(code: str, status: Optional[int]) -> Optional[ErrorType]:
    """What an S3 error answer means for the key it was about: an ErrorType when this key
    can never be fetched (missing, denied, a key S3 refuses), None when the service, the
    credentials or the bucket are at fault and the request should be retried."""
    code = code or ""
    if code in _MISSING_CODES:
        return ErrorType.MISSING
    if code in _SERVICE_CODES:
        return None
    if status is None or status >= 500 or status in (408, 429):
        return None
    if code in _DENIED_CODES or status == 403:
        return ErrorType.ACCESS_DENIED
    if status == 404:
        return ErrorType.MISSING
    if 400 <= status < 500:  # 400 InvalidArgument/KeyTooLong, 414 URI too long, odd empty codes
        return ErrorType.BAD_KEY
    return None


def s3_error_of(exc: BaseException) -> tuple[str, Optional[int]]:
    """(code, HTTP status) of a botocore ClientError."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", "") or "")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code, int(status) if status is not None else None


# --------------------------------------------------------------------------- PostgreSQL

# SQLSTATE classes that mean the server or the connection is at fault (retry): connection
# exceptions, resources, operator intervention, serialization/deadlock, a privilege or
# missing-table problem (a deployment error that an operator fixes while the batch waits).
_PG_TRANSIENT_CLASSES = ("08", "53", "57", "58", "40", "42", "55", "XX")


def pg_error_is_transient(exc: BaseException) -> bool:
    """True when a psycopg2 error is about the database or the connection; False when it is
    about the rows written (data exception 22, a program limit 54 such as an index row
    too large for a long key, integrity 23): the same rows would fail again."""
    pgcode = getattr(exc, "pgcode", None)
    if not pgcode:  # no answer from the server: the connection failed
        return True
    return pgcode.startswith(_PG_TRANSIENT_CLASSES)


# --------------------------------------------------------------------------- retries


def backoff(attempt: int, cap: float, base: float = 0.5) -> float:
    """Seconds to wait before retry number `attempt` (0-based): base doubling, at most cap."""
    return min(cap, base * 2 ** min(attempt, 32))
