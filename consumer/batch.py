"""One batch of Kafka messages -> rows in PostgreSQL, independent of Faust.

Stages: parse keys -> download from S3 concurrently -> decode+preprocess in a thread pool
-> the model, in chunks of INFER_CHUNK_SIZE images in the one inference thread -> one
transaction. The stages overlap inside a batch: each image is decoded as soon as it has
arrived, and a chunk goes to the model as soon as it is decoded, so the model works while
the rest of the batch downloads and decodes. The event loop only awaits; every blocking
step runs in an executor.

Failures are split in two kinds:
- per image (missing object, corrupt bytes, too large, bad message): an error row for that
  key; the rest of the batch goes on;
- transient (S3 or PostgreSQL unreachable): the whole batch is retried with capped
  exponential backoff until it succeeds, so nothing is acknowledged before it is written.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Optional, Sequence, Union

import botocore.exceptions
import psycopg2
import torch

from consumer import metrics
from consumer.images import ImageError, load_tensor
from consumer.model import Classifier
from db.queries import Prediction, PredictionError, write_batch
from settings import Settings

log = logging.getLogger(__name__)

# S3 answers that mean "this key will never work", as opposed to an outage or a config error
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_BAD_KEY_CODES = {"KeyTooLongError", "InvalidArgument", "InvalidURI", "400"}


DeadLetterSink = Callable[[list[tuple["Message", PredictionError]]], Awaitable[None]]


class TransientError(RuntimeError):
    """A service is unreachable; the batch is retried as a whole."""


@dataclass(frozen=True)
class Message:
    value: Optional[bytes]
    partition: int = -1
    offset: int = -1
    timestamp: Optional[float] = None  # Kafka message timestamp, seconds since the epoch


@dataclass
class BatchReport:
    size: int
    classified: int
    failed: int
    seconds: dict[str, float] = field(default_factory=dict)
    error_types: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)  # key sent -> row written, per image


def parse_key(msg: Message) -> Union[str, ImageError]:
    """The image key carried by a message, or the reason it carries none."""
    if not msg.value:
        return ImageError("bad_message", f"empty message at partition {msg.partition} offset {msg.offset}")
    try:
        key = msg.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return ImageError("bad_message", f"message is not UTF-8 ({exc})")
    if "\x00" in key:  # PostgreSQL text cannot hold NUL
        return ImageError("bad_message", "message contains a NUL byte")
    return key


def error_key(msg: Message) -> str:
    """A readable, unique key for a message that carries no usable image key."""
    if msg.value:
        text = msg.value.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
        return text[:1000]
    return f"<empty message p{msg.partition}@{msg.offset}>"


class BatchProcessor:
    def __init__(self, settings: Settings, classifier: Classifier, s3, connect: Callable,
                 dead_letter: Optional[DeadLetterSink] = None):
        self.settings = settings
        self.dead_letter = dead_letter
        self.classifier = classifier
        self.s3 = s3
        self.connect = connect
        self._conn = None
        self._io = ThreadPoolExecutor(settings.s3_max_concurrency, thread_name_prefix="s3")
        self._decode = ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="decode")
        self._infer = ThreadPoolExecutor(1, thread_name_prefix="infer")
        self._db = ThreadPoolExecutor(1, thread_name_prefix="db")

    # ------------------------------------------------------------ blocking steps

    def _fetch(self, key: str) -> Union[bytes, ImageError]:
        try:
            return self.s3.get_object(Bucket=self.settings.s3_bucket, Key=key)["Body"].read()
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _MISSING_CODES:
                return ImageError("missing", f"s3://{self.settings.s3_bucket}/{key} does not exist")
            if code in _BAD_KEY_CODES:
                return ImageError("bad_key", f"S3 rejected the key: {code}")
            raise TransientError(f"S3 error {code} for {key!r}: {exc}") from exc
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise TransientError(f"S3 unreachable: {exc}") from exc

    def _load(self, data: Union[bytes, ImageError]) -> tuple[Union[torch.Tensor, ImageError], float]:
        if isinstance(data, ImageError):
            return data, 0.0
        t = time.perf_counter()
        try:
            return load_tensor(data, self.settings.max_image_pixels, self.settings.fast_decode), time.perf_counter() - t
        except ImageError as exc:
            return exc, time.perf_counter() - t

    def _write(self, predictions: list[Prediction], errors: list[PredictionError]) -> None:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.connect()
            write_batch(self._conn, predictions, errors)
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            if self._conn is not None:
                self._conn.close()
            self._conn = None
            raise TransientError(f"PostgreSQL unavailable: {str(exc).strip()}") from exc

    # ------------------------------------------------------------ the batch

    async def process(self, messages: Sequence[Message]) -> BatchReport:
        loop = asyncio.get_running_loop()
        model, host = self.classifier.name, self.settings.hostname
        t0 = time.perf_counter()
        failures: list[tuple[Message, PredictionError]] = []
        work: list[tuple[Message, str]] = []
        for m in messages:
            key = parse_key(m)
            if isinstance(key, ImageError):
                failures.append((m, PredictionError(error_key(m), model, key.error_type, key.detail, host)))
            else:
                work.append((m, key))

        classified, image_errors, seconds = await self._classify(work)
        failures += [(m, PredictionError(k, model, e.error_type, e.detail, host)) for m, k, e in image_errors]
        t3 = time.perf_counter()

        now = time.time()
        predictions = [
            Prediction(image_key=k, model=model, category=top[0].category, confidence=top[0].confidence,
                       class_index=top[0].class_index, top_k=[x.as_dict() for x in top], hostname=host,
                       latency_ms=(now - m.timestamp) * 1000 if m.timestamp else None)
            for m, k, top in classified]
        await loop.run_in_executor(self._db, self._write, predictions, [e for _, e in failures])
        t4 = time.perf_counter()
        await self._send_dead_letters(failures)
        written = time.time()
        return BatchReport(len(messages), len(predictions), len(failures),
                           {**seconds, "write": t4 - t3, "batch": t4 - t0},
                           [e.error_type for _, e in failures],
                           [written - m.timestamp for m, _, _ in classified if m.timestamp])

    async def _classify(self, work: list[tuple[Message, str]]):
        """Download, decode and classify `work`, overlapping the three. Returns the classified
        (message, key, top-k) in `work` order, the per-image errors, and the stage seconds:
        download = wall time until the last object arrived; decode and infer = their busy time."""
        loop = asyncio.get_running_loop()
        chunk_size = self.settings.infer_chunk_size
        start = time.perf_counter()
        ready: list[tuple[int, torch.Tensor]] = []
        chunks: list[asyncio.Future] = []
        errors: dict[int, ImageError] = {}
        seconds = {"download": 0.0, "decode": 0.0, "infer": 0.0}

        def flush() -> None:
            if ready:
                chunks.append(loop.run_in_executor(self._infer, self._predict, list(ready)))
                ready.clear()

        async def one(i: int, key: str) -> None:
            blob = await loop.run_in_executor(self._io, self._fetch, key)
            seconds["download"] = time.perf_counter() - start
            tensor, took = await loop.run_in_executor(self._decode, self._load, blob)
            seconds["decode"] += took
            if isinstance(tensor, ImageError):
                errors[i] = tensor
                return
            ready.append((i, tensor))
            if len(ready) >= chunk_size:
                flush()

        tasks = [asyncio.ensure_future(one(i, k)) for i, (_, k) in enumerate(work)]
        try:
            await asyncio.gather(*tasks)
            flush()
            topks: dict[int, list] = {}
            for done in await asyncio.gather(*chunks):
                took, part = done
                seconds["infer"] += took
                topks.update(part)
        except BaseException:
            # a transient failure: stop what is still running before the batch is retried
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, *chunks, return_exceptions=True)
            raise
        classified = [(m, k, topks[i]) for i, (m, k) in enumerate(work) if i in topks]
        failed = [(m, k, errors[i]) for i, (m, k) in enumerate(work) if i in errors]
        return classified, failed, seconds

    def _predict(self, part: list[tuple[int, torch.Tensor]]) -> tuple[float, dict[int, list]]:
        t = time.perf_counter()
        topks = self.classifier.predict(torch.stack([x for _, x in part]))
        return time.perf_counter() - t, {i: top for (i, _), top in zip(part, topks)}

    async def _send_dead_letters(self, failures: list[tuple[Message, PredictionError]]) -> None:
        """After the error rows are committed (they are the record), tell whoever listens on
        the dead-letter topic; a failure to publish is logged, never fatal."""
        if not failures or self.dead_letter is None:
            return
        try:
            await self.dead_letter(failures)
        except Exception:  # noqa: BLE001
            log.exception("could not publish %d dead letters (they are in prediction_errors)", len(failures))

    async def process_until_done(self, messages: Sequence[Message], max_unexpected: int = 5) -> BatchReport:
        """process() until it succeeds: transient failures retry forever with capped backoff;
        an unexpected exception (a bug) is retried a few times, then the batch's keys are
        recorded as `internal` errors so the partition is never blocked for good."""
        attempt = unexpected = 0
        while True:
            try:
                return await self.process(messages)
            except TransientError as exc:
                problem = str(exc)
                metrics.RETRIES.labels("transient").inc()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any bug in a batch
                metrics.RETRIES.labels("unexpected").inc()
                unexpected += 1
                log.exception("batch of %d failed unexpectedly (%d/%d)", len(messages), unexpected,
                              max_unexpected)
                if unexpected >= max_unexpected:
                    return await self._give_up(messages, exc)
                problem = repr(exc)
            delay = min(self.settings.retry_backoff_max_s, 0.5 * 2 ** attempt)
            attempt += 1
            log.warning("batch of %d not written (attempt %d): %s; retrying in %.1fs",
                        len(messages), attempt, problem, delay)
            await asyncio.sleep(delay)

    async def _give_up(self, messages: Sequence[Message], exc: Exception) -> BatchReport:
        model, host = self.classifier.name, self.settings.hostname
        errors = [PredictionError(p if isinstance(p, str) else error_key(m), model, "internal",
                                  f"{type(exc).__name__}: {exc}", host)
                  for m, p in ((m, parse_key(m)) for m in messages)]
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                await loop.run_in_executor(self._db, self._write, [], errors)
                return BatchReport(len(messages), 0, len(errors), error_types=["internal"] * len(errors))
            except TransientError as err:
                attempt += 1
                await asyncio.sleep(min(self.settings.retry_backoff_max_s, 0.5 * 2 ** attempt))
                log.warning("recording failed batch: %s", err)

    def close(self) -> None:
        for pool in (self._io, self._decode, self._infer, self._db):
            pool.shutdown(wait=False, cancel_futures=True)
        if self._conn is not None:
            self._conn.close()
