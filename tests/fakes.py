"""In-memory stand-ins for the services, bytewax-testing style, so the processor's logic
(retries, backoff cap, give-up, chunking, ordering, stopping) is unit-tested in
milliseconds. Integration tests use the real services instead."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Optional

import botocore.exceptions

from common.errors import TransientError
from consumer.messages import Message
from consumer.model import TopK


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@dataclass
class MemoryS3:
    """get_object over a dict; `errors` maps a key to the exception its GET raises;
    `down_for` GETs in a row fail as if the server were unreachable."""

    objects: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    down_for: int = 0
    gets: list[str] = field(default_factory=list)

    def get_object(self, Bucket: str, Key: str) -> dict:  # noqa: N803 - boto3's names
        self.gets.append(Key)
        if self.down_for > 0:
            self.down_for -= 1
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3.invalid")
        if Key in self.errors:
            raise self.errors[Key]
        if Key not in self.objects:
            raise client_error("NoSuchKey", 404)
        data = self.objects[Key]
        return {"Body": io.BytesIO(data), "ContentLength": len(data)}


@dataclass
class ListSink:
    """A RowSink that keeps rows in lists; fails (as an outage) `fail_times` times first."""

    fail_times: int = 0
    predictions: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    attempts: int = 0

    shadows: list = field(default_factory=list)

    def write(self, predictions, failures, shadows=()):
        self.attempts += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise TransientError("PostgreSQL unavailable: fake outage")
        self.predictions += [p for _, p in predictions]
        self.errors += [e for _, e in failures]
        self.shadows += list(shadows)
        return []

    def close(self) -> None:
        pass


@dataclass
class ListDeadLetters:
    sent: list = field(default_factory=list)

    async def __call__(self, failures) -> None:
        self.sent += [(m.offset, str(e.error_type), e.image_key) for m, e in failures]


class FixedClassifier:
    """Every image is class 0 ("thing"); `fail_times` calls raise a bug-like exception."""

    def __init__(self, fail_times: int = 0, version: int = 0, category: str = "thing"):
        self.name, self.engine_name, self.fail_times, self.calls = "fake-model", "fake", fail_times, []
        self.version, self.category = version, category

    def predict(self, batch) -> list[list[TopK]]:
        self.calls.append(len(batch))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ValueError("a bug in the model call")
        return [[TopK(0, self.category, 0.9)] for _ in range(len(batch))]


def messages(*values: Optional[bytes]) -> list[Message]:
    return [Message(v, 0, i, None) for i, v in enumerate(values)]
