"""common.cli: the one line a command prints for an error its user can fix (unit: no services)."""

from __future__ import annotations

import botocore.exceptions
import pytest
from confluent_kafka import KafkaError, KafkaException

from common import cli
from common.errors import ServiceUnreachable


def test_a_users_error_is_one_line_and_exit_status_2(capsys):
    def main() -> int:
        raise ServiceUnreachable("cannot reach X at host:1")

    with pytest.raises(SystemExit) as ended:
        cli.run(main)
    assert ended.value.code == 2
    assert capsys.readouterr().err == "error: cannot reach X at host:1\n"


def test_a_bug_keeps_its_traceback():
    def main() -> int:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        cli.run(main)


def test_main_s_status_is_the_exit_status():
    with pytest.raises(SystemExit) as ended:
        cli.run(lambda: 3)
    assert ended.value.code == 3


@pytest.mark.parametrize(
    "exc, expected",
    [
        (botocore.exceptions.SSLError(endpoint_url="https://s3:9", error="x"), "over TLS"),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="https://s3:9"), "cannot reach S3 at https://s3:9"),
        (botocore.exceptions.NoCredentialsError(), "no S3 credentials"),
        (botocore.exceptions.ClientError({"Error": {"Code": "SignatureDoesNotMatch"}}, "GetObject"), "refused"),
        (KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED)), "lacks an ACL"),
    ],
)
def test_what_a_user_can_fix_is_named(exc, expected):
    assert expected in cli.message(exc)


@pytest.mark.parametrize(
    "exc",
    [
        botocore.exceptions.ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject"),
        KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT)),
        ValueError("x"),
    ],
)
def test_anything_else_is_left_alone(exc):
    assert cli.message(exc) is None
