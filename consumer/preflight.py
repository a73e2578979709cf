"""What `faust -A consumer.app worker` checks before it joins the group: that Kafka answers,
and that PostgreSQL and S3 accept its configuration. A mistake (a wrong password, a CA that
does not verify, TLS missing on one side, Kafka out of reach) is one line and exit status 2
within seconds, not a worker that retries a handshake it can never complete. An outage of
PostgreSQL or S3 is not a mistake: the worker starts and waits for them, as it does when they
go away later (docs/reliability.md)."""

from __future__ import annotations

from typing import Optional

from settings import Settings


def problem(settings: Settings) -> Optional[str]:
    """The first configuration mistake found, as one line; None when there is none."""
    from common.reach import Unreachable, check_kafka

    try:
        check_kafka(settings)
    except Unreachable as exc:
        return str(exc)
    return _database(settings) or _s3(settings)


def _database(settings: Settings) -> Optional[str]:
    from db.connection import DatabaseUnreachable, connect

    try:
        connect(settings).close()
    except DatabaseUnreachable as exc:  # a mistake, or an outage (starting up, full, down): waited for
        return str(exc) if exc.kind in ("auth", "tls") else None
    return None


def _s3(settings: Settings) -> Optional[str]:
    """A GET of a key that should not exist, the one request a worker may make: its answer
    (NoSuchKey, AccessDenied, NoSuchBucket) proves TLS and the signature work."""
    import botocore.exceptions

    from common.cli import S3_BAD_CREDENTIALS, message

    try:
        settings.s3_client().get_object(Bucket=settings.s3_bucket, Key="visionscaling-preflight/absent")
    except (botocore.exceptions.SSLError, botocore.exceptions.NoCredentialsError) as exc:
        return message(exc)
    except botocore.exceptions.ClientError as exc:
        # AccessDenied may be this probe's key only: a worker needs GetObject alone
        code = exc.response.get("Error", {}).get("Code", "")
        return message(exc) if code in S3_BAD_CREDENTIALS else None
    except botocore.exceptions.BotoCoreError:
        return None  # unreachable: an outage, waited for
    return None
