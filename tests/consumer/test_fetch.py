"""consumer.fetch.S3Images on the real S3 server of the test stack: the bytes boto3 stored,
and each kind of failure read as the same error the worker writes."""

import concurrent.futures

import pytest

from common.errors import ErrorType, ImageError, TransientError
from consumer.fetch import S3Images
from upload import ensure_bucket

ODD_KEYS = [
    "plain.jpg",
    "with space/and+plus=equals&amp.jpg",
    "évidemment/日本語.jpg",
    "evil/<script>alert(1)</script>.jpg",
    "percent%2Fslash%20.jpg",
    "tilde~star*paren(1).jpg",
]


@pytest.fixture
def bucket(stack_settings):
    s3 = stack_settings.s3_client()
    ensure_bucket(s3, stack_settings.s3_bucket)
    return s3


def test_gets_exactly_the_stored_bytes_of_any_key(stack_settings, bucket):
    stored = {key: f"bytes of {key}".encode() * (i + 1) for i, key in enumerate(ODD_KEYS)}
    for key, data in stored.items():
        bucket.put_object(Bucket=stack_settings.s3_bucket, Key=key, Body=data)
    images = S3Images.from_settings(stack_settings)
    try:
        assert {key: images.fetch(key, 10_000) for key in ODD_KEYS} == stored
        # many threads over the pooled connections, as the worker's download threads do
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            again = list(pool.map(lambda k: images.fetch(k, 10_000), ODD_KEYS * 20))
        assert again == [stored[k] for k in ODD_KEYS * 20]
        # kept alive: 126 GETs over at most S3_MAX_CONCURRENCY connections, not one each
        assert images._pool.num_connections <= stack_settings.s3_max_concurrency
    finally:
        images.close()


def test_a_missing_key_is_missing_and_an_object_over_the_limit_is_never_read(stack_settings, bucket):
    bucket.put_object(Bucket=stack_settings.s3_bucket, Key="big.jpg", Body=b"\xff" * 50_000)
    bucket.put_object(Bucket=stack_settings.s3_bucket, Key="small.jpg", Body=b"small")
    images = S3Images.from_settings(stack_settings.model_copy(update={"s3_max_concurrency": 1}))
    try:
        missing = images.fetch("never-uploaded.jpg", 10_000)
        assert isinstance(missing, ImageError) and missing.error_type is ErrorType.MISSING
        assert f"s3://{stack_settings.s3_bucket}/never-uploaded.jpg" in missing.detail
        big = images.fetch("big.jpg", 10_000)
        assert isinstance(big, ImageError) and big.error_type is ErrorType.TOO_LARGE
        assert "50000 bytes exceeds MAX_IMAGE_BYTES=10000" in big.detail
        # the one connection was closed with the unread body: the next GET still works
        assert images.fetch("small.jpg", 10_000) == b"small"
        assert images.fetch("big.jpg", 50_000) == b"\xff" * 50_000
    finally:
        images.close()


def test_wrong_credentials_a_missing_bucket_and_no_server_are_the_services_fault(stack_settings, bucket, monkeypatch):
    with monkeypatch.context() as env:
        env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        wrong = S3Images.from_settings(stack_settings)
    with pytest.raises(TransientError, match="SignatureDoesNotMatch|InvalidAccessKeyId"):
        wrong.fetch("plain.jpg", 10_000)
    no_bucket = S3Images.from_settings(stack_settings.model_copy(update={"s3_bucket": "no-such-bucket-here"}))
    with pytest.raises(TransientError, match="NoSuchBucket"):
        no_bucket.fetch("plain.jpg", 10_000)
    down = S3Images.from_settings(stack_settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:1"}))
    with pytest.raises(TransientError, match="S3 unreachable"):
        down.fetch("plain.jpg", 10_000)
