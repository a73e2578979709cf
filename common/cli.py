"""How every command ends on an error its user can fix: one line on stderr naming the service,
its address (never a secret) and what to check, and exit status 2; never a traceback.

    if __name__ == "__main__":
        cli.run(main)

Caught here: a service out of reach or refusing (common.errors.ServiceUnreachable: Kafka from
common/reach.py, PostgreSQL from db/connection.py), S3's TLS, connection and credential
failures, and Kafka's authorization refusals (a principal without the ACL it needs:
docs/deploying/security.md). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

from common.errors import ServiceUnreachable

# answers that say the credentials themselves are wrong, whatever was asked
S3_BAD_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"})
# and those that say they may not do what was asked (a HEAD's 403 has no code but its status)
_S3_CREDENTIALS = S3_BAD_CREDENTIALS | {"AccessDenied", "403"}


def message(exc: BaseException) -> str | None:
    """The one line for an error a user can fix, or None for anything else."""
    import botocore.exceptions
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(exc, ServiceUnreachable):
        return str(exc)
    if isinstance(exc, botocore.exceptions.SSLError):
        return (
            f"cannot reach S3 at {exc.kwargs.get('endpoint_url', '?')} over TLS: the certificate did not verify; "
            "check S3_CA_BUNDLE and S3_ENDPOINT_URL"
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return f"cannot reach S3 at {exc.kwargs.get('endpoint_url', '?')}: no answer; check S3_ENDPOINT_URL"
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile or a role)"
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in _S3_CREDENTIALS:
            return f"S3 refused the request ({code}): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and their rights"
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err = exc.args[0]
        if err.code() in (
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.GROUP_AUTHORIZATION_FAILED,
            KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        ):
            return (
                f"Kafka refused: {err.str()}; the principal (KAFKA_SASL_USERNAME) lacks an ACL this command "
                "needs (docs/deploying/security.md lists each component's)"
            )
    return None


def run(main: Callable[[], int]) -> NoReturn:
    """sys.exit(main()), with a user's error as one line and exit status 2."""
    try:
        code = main()
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is one a user can fix
        line = message(exc)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        code = 2
    sys.exit(code)
