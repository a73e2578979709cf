"""One object from S3, for one image: its bytes, or the reason this key can never give any
(an ImageError row), or a TransientError when S3 itself is the problem (the batch retries).

The GET is signed by botocore's own SigV4 signer, with boto3's credential chain, and sent
over a pooled urllib3 connection. Same request as boto3's `get_object`, for a fraction of
its client CPU: boto3's event hooks, endpoint rules and response parsing cost more than the
transfer of a ~100 KB photo, and the S3 client was the largest cost of a worker outside decode
and the model. benchmarks/pipeline.py measures the workers' CPU per image (docs/performance.md);
the comparison with get_object is in benchmarks/HISTORY.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Protocol, Union
from urllib.parse import quote, urlsplit

import botocore.exceptions
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from common.errors import ErrorType, ImageError, TransientError, classify_s3_error
from settings import Settings

_CODE = re.compile(rb"<Code>([^<]{1,200})</Code>")
_ERROR_BODY_BYTES = 64 * 1024
_RETRYABLE_STATUS = (500, 502, 503, 504)


class Blob(bytes):
    """An object's bytes with the ETag S3 answered the GET with (None when it sent none): the
    row records which version of an overwritten object it classified. A bytes subclass, so
    that everything reading the bytes reads them as before."""

    etag: Optional[str]

    def __new__(cls, data: bytes, etag: Optional[str] = None) -> Blob:
        blob = super().__new__(cls, data)
        blob.etag = etag.strip('"') if etag else None
        return blob


class ImageSource(Protocol):
    def fetch(self, key: str, max_bytes: int) -> Union[bytes, ImageError]:
        """The object's bytes (a Blob where the source knows its ETag), or why there are none."""

    def close(self) -> None: ...


def error_of_answer(
    status: int, body: bytes, bucket: str, key: str, region: str = "", bucket_region: Optional[str] = None
) -> ImageError:
    """What a non-200 answer to a GET means: this key's ImageError, or TransientError (raised)
    when the service, the credentials or the bucket are at fault. `bucket_region`: AWS's
    x-amz-bucket-region header, sent when a request went to (or was signed for) the wrong
    region; the workers do not follow redirects, so the message names the setting to fix."""
    if bucket_region and region and bucket_region != region:
        raise TransientError(
            f"S3 bucket {bucket!r} is in region {bucket_region}, not S3_REGION={region}: set S3_REGION={bucket_region}"
        )
    found = _CODE.search(body or b"")
    code = found.group(1).decode("utf-8", "replace") if found else ""
    kind = classify_s3_error(code, status)
    if kind is None:
        raise TransientError(f"S3 error {code or status} for {key[:200]!r}")
    if kind is ErrorType.MISSING:
        return ImageError(kind, f"s3://{bucket}/{key} does not exist")
    return ImageError(kind, f"S3 answered {status} {code or '(no code)'}")


def bucket_url(endpoint_url: Optional[str], bucket: str, region: str) -> str:
    """Path-style on a custom endpoint (s3proxy, MinIO, Ceph answer it without DNS set-up);
    virtual-hosted on AWS when the bucket name allows it."""
    if endpoint_url:
        return f"{endpoint_url.rstrip('/')}/{quote(bucket)}"
    if re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket):
        return f"https://{bucket}.s3.{region}.amazonaws.com"
    return f"https://s3.{region}.amazonaws.com/{quote(bucket)}"


class S3Images:
    """GETs from one bucket; thread-safe, `connections` kept alive for reuse."""

    def __init__(
        self,
        endpoint_url: Optional[str],
        bucket: str,
        region: str,
        connections: int,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        ca_bundle: Optional[Path] = None,
    ):
        import boto3

        self.bucket, self.region = bucket, region
        # a session of its own: the standard chain (env, profile, container and instance
        # roles), refreshed by botocore when the credentials are temporary
        self._credentials = boto3.session.Session().get_credentials()
        base = bucket_url(endpoint_url, bucket, region)
        self._url, self._path = base, urlsplit(base).path
        # urlopen on the pool sends the path as given; a PoolManager would remove "../"
        # segments after the path was signed (keys may contain them)
        self._pool = urllib3.PoolManager(
            maxsize=connections,
            block=True,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            # HTTPS is always verified: against S3_CA_BUNDLE, else the system's CAs
            **({"ca_certs": str(ca_bundle)} if ca_bundle else {}),
        ).connection_from_url(base)
        # connection errors, timeouts and 5xx: twice more, then the batch's own retry takes over
        self._retries = urllib3.Retry(
            total=2, backoff_factor=0.1, status_forcelist=_RETRYABLE_STATUS, redirect=False, raise_on_status=False
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Images:
        return cls(
            settings.s3_endpoint_url,
            settings.s3_bucket,
            settings.s3_region,
            settings.s3_max_concurrency,
            ca_bundle=settings.s3_ca_bundle,
        )

    def _signed_headers(self, url: str) -> dict[str, str]:
        if self._credentials is None:
            raise TransientError("S3: no AWS credentials (AWS_ACCESS_KEY_ID/..., a profile or a role)")
        request = AWSRequest(method="GET", url=url)
        S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self.region).add_auth(request)
        return dict(request.headers.items())

    def fetch(self, key: str, max_bytes: int) -> Union[bytes, ImageError]:
        quoted = quote(key, safe="/~")
        try:
            response = self._pool.urlopen(
                "GET",
                f"{self._path}/{quoted}",
                headers=self._signed_headers(f"{self._url}/{quoted}"),
                retries=self._retries,
                preload_content=False,
            )
            try:
                return self._read(response, key, max_bytes)
            finally:
                response.release_conn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransientError(f"S3 unreachable: {exc}") from exc
        except botocore.exceptions.BotoCoreError as exc:  # temporary credentials that did not refresh
            raise TransientError(f"S3 credentials: {exc}") from exc

    def _read(self, response, key: str, max_bytes: int) -> Union[bytes, ImageError]:
        if response.status != 200:
            body = response.read(_ERROR_BODY_BYTES)
            bucket_region = response.headers.get("x-amz-bucket-region")
            return error_of_answer(response.status, body, self.bucket, key, self.region, bucket_region)
        size = response.headers.get("Content-Length")
        if size is not None and size.isdigit() and int(size) > max_bytes:
            response.close()  # never read what is over the limit (the connection goes with it)
            return ImageError(ErrorType.TOO_LARGE, f"{size} bytes exceeds MAX_IMAGE_BYTES={max_bytes}")
        data = response.read(max_bytes + 1, decode_content=False)  # stored bytes, as boto3 gives
        if len(data) > max_bytes:  # no Content-Length (chunked): counted while reading
            response.close()
            return ImageError(ErrorType.TOO_LARGE, f"more than MAX_IMAGE_BYTES={max_bytes} bytes")
        return Blob(data, response.headers.get("ETag"))

    def close(self) -> None:
        self._pool.close()
