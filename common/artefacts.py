"""Model artefacts in S3: immutable, one folder per version, checked by SHA-256.

    s3://MODEL_BUCKET/MODEL_PREFIX<name>/<version>/model.pt       the state_dict (torch.save)
    s3://MODEL_BUCKET/MODEL_PREFIX<name>/<version>/manifest.json  categories, base model,
                                                                  preprocessing, metrics, hashes
    s3://MODEL_BUCKET/MODEL_PREFIX<name>/<version>/confusion.png  the validation confusion matrix

Torch-free: bytes in, bytes out; the model is built from them in consumer/model.py.
"""

from __future__ import annotations

import hashlib

from botocore.exceptions import ClientError

from common.errors import ErrorType, VisionScalingError, classify_s3_error, s3_error_of
from settings import Settings

WEIGHTS, MANIFEST, CONFUSION_PNG = "model.pt", "manifest.json", "confusion.png"


class ArtefactError(VisionScalingError, RuntimeError):
    """An artefact that is missing, already exists, or does not match its registry row."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def folder(settings: Settings, name: str, version: int) -> str:
    return f"{settings.model_prefix}{name}/{version}/"


def uri(settings: Settings, name: str, version: int) -> str:
    return f"s3://{settings.model_bucket}/{folder(settings, name, version)}"


def _split(s3_uri: str) -> tuple[str, str]:
    if not s3_uri.startswith("s3://"):
        raise ArtefactError(f"not an s3:// URI: {s3_uri!r}")
    bucket, _, key = s3_uri[5:].partition("/")
    return bucket, key


def put(s3, s3_uri: str, files: dict[str, bytes], *, replace_orphan: bool = False) -> list[str]:
    """Write a version's files; refuses to overwrite one (versions are immutable). With
    `replace_orphan` (only for a caller that holds the registry's lock on the name and has
    seen that no row names this version), what the folder holds is what a fit that died
    between its upload and its commit left: it is deleted first, or the name would be wedged,
    every later fit computing this same version. Returns the keys it replaced."""
    bucket, prefix = _split(s3_uri)
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if classify_s3_error(*s3_error_of(exc)) is not ErrorType.MISSING and s3_error_of(exc)[0] != "NoSuchBucket":
            raise
        s3.create_bucket(Bucket=bucket)
    existing = _keys(s3, bucket, prefix)
    if existing and not replace_orphan:
        raise ArtefactError(f"{s3_uri} already holds an artefact: versions are never overwritten")
    for key in existing:
        s3.delete_object(Bucket=bucket, Key=key)
    for name, data in files.items():
        s3.put_object(Bucket=bucket, Key=prefix + name, Body=data)
    return existing


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    """Every key under `prefix`."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def get(s3, s3_uri: str, name: str) -> bytes:
    bucket, prefix = _split(s3_uri)
    try:
        return s3.get_object(Bucket=bucket, Key=prefix + name)["Body"].read()
    except ClientError as exc:
        raise ArtefactError(f"cannot read {s3_uri}{name}: {s3_error_of(exc)[0] or exc}") from exc


def get_verified_weights(s3, s3_uri: str, expected_sha256: str) -> bytes:
    """The weights, only if their SHA-256 is the registry's (a corrupted or swapped artefact
    is refused, never served)."""
    data = get(s3, s3_uri, WEIGHTS)
    actual = sha256(data)
    if actual != expected_sha256:
        raise ArtefactError(
            f"{s3_uri}{WEIGHTS} has SHA-256 {actual[:16]}…, the registry says {expected_sha256[:16]}…: refused"
        )
    return data
