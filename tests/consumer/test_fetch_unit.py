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


def test_a_bucket_in_another_region_names_the_setting_to_fix():
    body = b"<Error><Code>PermanentRedirect</Code><Endpoint>b.s3.eu-west-1.amazonaws.com</Endpoint></Error>"
    with pytest.raises(TransientError, match="in region eu-west-1, not S3_REGION=us-east-1: set S3_REGION=eu-west-1"):
        error_of_answer(301, body, "b", "k.jpg", "us-east-1", "eu-west-1")
    # the same header naming the configured region says nothing more than the code
    with pytest.raises(TransientError, match="PermanentRedirect"):
        error_of_answer(301, body, "b", "k.jpg", "eu-west-1", "eu-west-1")
    assert error_of_answer(404, b"", "b", "k.jpg", "us-east-1", None).error_type is ErrorType.MISSING


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


def test_a_redirect_to_the_buckets_region_is_read_from_the_answer(monkeypatch):
    """What AWS answers a GET sent to the wrong region (s3proxy never does): 301, no Location,
    the bucket's region in a header. Served on loopback; the worker must not follow it."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    body = b"<Error><Code>PermanentRedirect</Code><Endpoint>images.s3.eu-west-1.amazonaws.com</Endpoint></Error>"
    paths = []

    class Aws(BaseHTTPRequestHandler):
        def do_GET(self):
            paths.append(self.path)
            self.send_response(301)
            self.send_header("x-amz-bucket-region", "eu-west-1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Aws)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    images = S3Images(f"http://127.0.0.1:{server.server_port}", "images", "us-east-1", 1)
    try:
        with pytest.raises(TransientError, match="set S3_REGION=eu-west-1"):
            images.fetch("k.jpg", 10_000)
        assert paths == ["/images/k.jpg"]  # asked once, not retried as a 5xx, not followed
    finally:
        images.close()
        server.shutdown()
        server.server_close()
