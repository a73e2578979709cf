"""How consumer.fetch reads S3's error answers and where it sends a bucket's requests."""

import pytest

from common.errors import ErrorType, TransientError
from consumer.fetch import bucket_url, error_of_answer


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
