"""How consumer.fetch reads S3's error answers and where it sends a bucket's requests."""

import pytest

from common.errors import ErrorType, TransientError
from consumer.fetch import S3Images, bucket_url, error_of_answer


@pytest.mark.parametrize(
    "status, code, expected",
    [
        (404, "NoSuchKey", ErrorType.MISSING),
        (404, "", ErrorType.MISSING),
        (403, "AccessDenied", ErrorType.ACCESS_DENIED),
        (400, "KeyTooLongError", ErrorType.BAD_KEY),
        (414, "", ErrorType.BAD_KEY),
        (404, "NoSuchBucket", None),
        (403, "SignatureDoesNotMatch", None),
        (503, "SlowDown", None),
        (500, "", None),
    ],
)
def test_error_answers_are_read_as_the_key_or_the_service(status, code, expected):
    body = f'<?xml version="1.0"?><Error><Code>{code}</Code><Message>m</Message></Error>'.encode() if code else b""
    if expected is None:
        with pytest.raises(TransientError):
            error_of_answer(status, body, "b", "k.jpg")
    else:
        assert error_of_answer(status, body, "b", "k.jpg").error_type is expected


def test_bucket_urls():
    assert bucket_url("http://127.0.0.1:9000/", "images", "us-east-1") == "http://127.0.0.1:9000/images"
    assert bucket_url(None, "images", "eu-west-1") == "https://images.s3.eu-west-1.amazonaws.com"
    assert bucket_url(None, "my.dotted.bucket", "us-east-1") == "https://s3.us-east-1.amazonaws.com/my.dotted.bucket"


def test_credentials_that_cannot_refresh_are_the_services_fault():
    from botocore.credentials import RefreshableCredentials
    from botocore.exceptions import CredentialRetrievalError

    def refresh():
        raise CredentialRetrievalError(provider="instance-metadata", error_msg="metadata service unreachable")

    images = S3Images("http://127.0.0.1:1", "images", "us-east-1", 1)
    images._credentials = RefreshableCredentials.create_from_metadata(
        {"access_key": "a", "secret_key": "s", "token": "t", "expiry_time": "2000-01-01T00:00:00Z"}, refresh, "test"
    )
    with pytest.raises(TransientError, match="S3 credentials: .*metadata service unreachable"):
        images.fetch("k.jpg", 100)
