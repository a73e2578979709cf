"""In-memory stand-ins for the services, bytewax-testing style, so the processor's logic
(retries, backoff cap, give-up, chunking, ordering, stopping) is unit-tested in
milliseconds. Integration tests use the real services instead."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Union

from common.errors import ErrorType, ImageError, TransientError
from consumer.fetch import error_of_answer
from consumer.messages import Message


@dataclass
class MemoryS3:
    """An ImageSource (consumer.fetch) over a dict; `errors` maps a key to the (HTTP status,
    S3 error code) its GET is answered with, read by the same rules as the real answers;
    `down_for` GETs in a row fail as if the server were unreachable."""

    objects: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    down_for: int = 0
    gets: list[str] = field(default_factory=list)
    bucket: str = "memory"

    def fetch(self, key: str, max_bytes: int) -> Union[bytes, ImageError]:
        self.gets.append(key)
        if self.down_for > 0:
            self.down_for -= 1
            raise TransientError("S3 unreachable: fake outage")
        if key in self.errors:
            status, code = self.errors[key]
            return error_of_answer(status, f"<Error><Code>{code}</Code></Error>".encode(), self.bucket, key)
        if key not in self.objects:
            return error_of_answer(404, b"<Error><Code>NoSuchKey</Code></Error>", self.bucket, key)
        if len(self.objects[key]) > max_bytes:
            return ImageError(ErrorType.TOO_LARGE, f"{len(self.objects[key])} bytes exceeds MAX_IMAGE_BYTES")
        return self.objects[key]

    def close(self) -> None:
        pass


@dataclass
class ListSink:
    """A RowSink that keeps rows in lists; fails (as an outage) `fail_times` times first."""

    fail_times: int = 0
    predictions: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    attempts: int = 0

    shadows: list = field(default_factory=list)
    events: list = field(default_factory=list)
    arrivals: Counter = field(default_factory=Counter)
    vectors: list = field(default_factory=list)

    def write(self, predictions, failures, shadows=(), events=(), arrivals=None, vectors=()):
        self.attempts += 1
        if self.fail_times > 0:
            self.fail_times -= 1
            raise TransientError("PostgreSQL unavailable: fake outage")
        self.predictions += [p for _, p in predictions]
        self.errors += [e for _, e in failures]
        self.shadows += list(shadows)
        self.events += list(events)
        self.arrivals.update(arrivals or {})
        self.vectors += list(vectors)
        return []

    def close(self) -> None:
        pass


@dataclass
class ListDeadLetters:
    sent: list = field(default_factory=list)

    async def __call__(self, failures) -> None:
        self.sent += [(m.offset, str(e.error_type), e.image_key) for m, e in failures]


class FixedHead:
    """Every image is class 0 (`category`); `fail_times` calls raise a bug-like exception."""

    trunk = "none"

    def __init__(self, fail_times: int = 0, category: str = "thing"):
        self.categories, self.fail_times, self.calls = [category, "other"], fail_times, []

    def probabilities(self, outputs):
        import torch

        self.calls.append(len(outputs.batch))
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ValueError("a bug in the model call")
        return torch.tensor([[0.9, 0.1]] * len(outputs.batch))


def fixed_served(name: str = "fake-model", version: int = 0, stage: str = "production", **head):
    from consumer.serving import Served

    return Served(name, version, FixedHead(**head), stage)


def fixed_models(*served, fail_times: int = 0, version: int = 0, category: str = "thing", embed: bool = False):
    """A real serving.ModelSet over fixed heads: one model ("fake-model") unless `served` lists
    the production and shadow versions. With `embed`, a fake trunk ("fake-trunk") whose
    feature map is each image's mean colour per channel, spread over 512 channels: two photos
    of other colours get other embeddings."""
    from consumer.serving import ModelSet

    served = served or (fixed_served(version=version, fail_times=fail_times, category=category),)
    trunks = {"fake-trunk": fake_trunk()} if embed else {}
    return ModelSet(
        tuple(s for s in served if s.stage == "production"),
        tuple(s for s in served if s.stage == "shadow"),
        trunks,
        5,
        "fake-trunk" if embed else None,
    )


def fake_trunk():

    from consumer.trunk import Trunk

    def run(batch):
        colour = batch.mean(dim=(2, 3))  # [N, 3]
        return (colour.repeat(1, 171)[:, :512] + 3).reshape(-1, 512, 1, 1).expand(-1, 512, 13, 13)

    return Trunk("fake-trunk", run, None)


def messages(*values: Optional[bytes]) -> list[Message]:
    return [Message(v, 0, i, None) for i, v in enumerate(values)]
