"""One batch of Kafka messages -> rows in PostgreSQL, independent of Faust.

Stages: sort the messages (consumer/intake.py: bare keys, S3 event notifications, junk) ->
download, decode and classify the images (consumer/stages.py, which overlaps the three) ->
one transaction, with the S3 events the keys arrived by (db/events.py) and the images'
embeddings (db/embeddings.py). The event loop only
awaits; every blocking step runs in an executor.

Failures are split by what they mean (common/errors.py):
- about one image (missing or denied object, a key S3 or PostgreSQL refuses, bytes that do
  not decode, too large, a bad message): an error row for that key; the rest go on;
- about a service (S3 or PostgreSQL unreachable, throttling, bad credentials): the whole
  batch is retried with capped exponential backoff until it is written, so nothing is
  acknowledged before it is written; a stopping worker abandons the retry instead;
- a bug (any other exception): retried a few times, then the batch's keys become
  `internal` error rows (and dead letters) so that no partition is blocked for good.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from common.errors import ErrorType, TransientError, VisionScalingError, backoff
from consumer.fetch import ImageSource
from consumer.intake import sort_batch
from consumer.messages import BatchReport, DeadLetterSink, Message
from consumer.serving import Loader, ModelSet, Served
from consumer.sink import RowSink
from consumer.stages import ImageStages
from db.embeddings import Embedding
from db.queries import ErrorRow, Prediction, ShadowPrediction
from settings import Settings

log = logging.getLogger(__name__)

__all__ = ["BatchProcessor", "BatchReport", "Message", "TransientError"]


class Abandoned(VisionScalingError):
    """The worker is stopping: the batch was left unwritten and unacknowledged."""


class BatchProcessor:
    """`images` gives each key's bytes (consumer.fetch.S3Images; tests/fakes: a dict), `sink`
    writes a batch's rows (consumer.sink.RowWriter: PostgreSQL; tests/fakes: a list)."""

    def __init__(
        self,
        settings: Settings,
        models: ModelSet,
        images: ImageSource,
        sink: RowSink,
        dead_letter: Optional[DeadLetterSink] = None,
        on_retry: Optional[Callable[[str], None]] = None,
        loader: Optional[Loader] = None,
        stages: Optional[ImageStages] = None,
    ):
        self.settings = settings
        self.loader = loader  # builds new versions' heads on the same trunks (consumer/rollout.py)
        self.dead_letter = dead_letter
        self.models = models  # every served model and shadow version (consumer/serving.py)
        self.writer = sink
        self.on_retry = on_retry or (lambda reason: None)
        self.stopping = False  # set by the worker's stop: retries end, the batch is abandoned
        self.retrying = False  # the batch in flight is waiting out a failure
        self.stages = stages or ImageStages(settings, images)  # download -> decode -> the model
        self._db = ThreadPoolExecutor(1, thread_name_prefix="db")

    # ------------------------------------------------------------ the batch

    async def process(self, messages: Sequence[Message]) -> BatchReport:
        loop = asyncio.get_running_loop()
        models = self.models  # one snapshot for the whole batch, whatever is swapped in meanwhile
        host = self.settings.hostname
        t0 = time.perf_counter()
        intake = sort_batch(messages, self.settings.s3_bucket)
        failures = _error_rows(intake.failures, models.names, host)

        classified, image_errors, seconds, ms_per_image = await self.stages.classify(intake.work, models)
        failures += _error_rows(image_errors, models.names, host)
        t3 = time.perf_counter()

        now = time.time()
        predictions = [
            (m, _prediction(k, served, top, host, (now - m.timestamp) * 1000 if m.timestamp else None, etag))
            for m, k, tops, etag, _ in classified
            for served, top in tops.items()
            if served.stage == "production"
        ]
        shadows = [
            ShadowPrediction(
                k,
                served.name,
                served.version,
                top[0].category,
                top[0].confidence,
                top[0].class_index,
                [x.as_dict() for x in top],
                host,
                ms_per_image[served],
            )
            for _, k, tops, _, _ in classified
            for served, top in tops.items()
            if served.stage == "shadow"
        ]
        vectors = [Embedding(c.key, models.embed, c.vector, c.etag) for c in classified if c.vector is not None]
        refused = await loop.run_in_executor(
            self._db, self.writer.write, predictions, failures, shadows, intake.events, dict(intake.arrivals), vectors
        )
        t4 = time.perf_counter()
        if refused:  # rows the database would not take were recorded as errors instead
            gone = {(id(m), e.model) for m, e in refused}
            predictions = [(m, p) for m, p in predictions if (id(m), p.model) not in gone]
            failures = [(m, e) for m, e in failures if (id(m), e.model) not in gone] + refused
        await self._send_dead_letters(failures)
        written = time.time()
        failed = _first_per_message(failures)  # an image's errors, counted once whatever the models
        ok = {id(m): m for m, _ in predictions}
        return BatchReport(
            len(messages),
            len(ok),
            len(failed),
            {**seconds, "write": t4 - t3, "batch": t4 - t0},
            [str(e.error_type) for _, e in failed],
            [written - m.timestamp for m in ok.values() if m.timestamp],
        )

    async def _send_dead_letters(self, failures: list[tuple[Message, ErrorRow]]) -> None:
        """After the error rows are committed (they are the record), tell whoever listens on
        the dead-letter topic; a failure to publish is logged, never fatal."""
        if not failures or self.dead_letter is None:
            return
        try:
            await self.dead_letter(_first_per_message(failures))  # one per image, not per model
        except Exception:  # noqa: BLE001
            log.exception("could not publish %d dead letters (they are in prediction_errors)", len(failures))

    async def process_until_done(self, messages: Sequence[Message], max_unexpected: int = 5) -> BatchReport:
        """process() until it succeeds: transient failures retry with capped backoff until the
        worker stops (then Abandoned: nothing written, nothing acknowledged); an unexpected
        exception (a bug) is retried a few times, then the batch's keys are recorded as
        `internal` errors so the partition is never blocked for good."""
        try:
            return await self._until_done(messages, max_unexpected)
        finally:
            self.retrying = False

    async def _until_done(self, messages: Sequence[Message], max_unexpected: int) -> BatchReport:
        attempt = unexpected = 0
        while True:
            try:
                return await self.process(messages)
            except TransientError as exc:
                problem, reason = str(exc), "transient"
            except Exception as exc:  # noqa: BLE001 - the worker must outlive any bug in a batch
                unexpected += 1
                log.exception("batch of %d failed unexpectedly (%d/%d)", len(messages), unexpected, max_unexpected)
                if unexpected >= max_unexpected:
                    return await self._give_up(messages, exc)
                problem, reason = repr(exc), "unexpected"
            self.on_retry(reason)
            self.retrying = True
            if self.stopping:
                raise Abandoned(f"worker stopping; batch of {len(messages)} left unacknowledged: {problem}")
            delay = backoff(attempt, self.settings.retry_backoff_max_s)
            attempt += 1
            log.warning(
                "batch of %d not written (attempt %d): %s; retrying in %.1fs", len(messages), attempt, problem, delay
            )
            await asyncio.sleep(delay)

    async def _give_up(self, messages: Sequence[Message], exc: Exception) -> BatchReport:
        host = self.settings.hostname
        detail = f"{type(exc).__name__}: {exc}"[:2000]
        intake = sort_batch(messages, self.settings.s3_bucket)
        failures = [
            (m, ErrorRow(k, model, ErrorType.INTERNAL, detail, host))
            for m, k in [*intake.work, *((m, k) for m, k, _ in intake.failures)]
            for model in self.models.names
        ]
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                await loop.run_in_executor(self._db, self.writer.write, [], failures)
                break
            except TransientError as err:
                self.retrying = True
                if self.stopping:
                    raise Abandoned(f"worker stopping; {len(messages)} internal errors not recorded") from err
                delay = backoff(attempt, self.settings.retry_backoff_max_s)
                attempt += 1
                log.warning("recording failed batch as internal errors: %s; retrying in %.1fs", err, delay)
                await asyncio.sleep(delay)
        await self._send_dead_letters(failures)
        failed = _first_per_message(failures)
        return BatchReport(len(messages), 0, len(failed), error_types=[ErrorType.INTERNAL.value] * len(failed))

    def close(self) -> None:
        self.stages.close()
        self._db.shutdown(wait=False, cancel_futures=True)
        self.writer.close()


def _error_rows(failures, names: list[str], host: str) -> list[tuple[Message, ErrorRow]]:
    """An image that failed failed for every served model: an error row for each."""
    return [(m, ErrorRow(k, name, e.error_type, e.detail, host)) for m, k, e in failures for name in names]


def _first_per_message(failures: list[tuple[Message, ErrorRow]]) -> list[tuple[Message, ErrorRow]]:
    seen: dict[int, tuple[Message, ErrorRow]] = {}
    for m, e in failures:
        seen.setdefault(id(m), (m, e))
    return list(seen.values())


def _prediction(key: str, served: Served, top: list, host: str, latency_ms, etag) -> Prediction:
    return Prediction(
        image_key=key,
        model=served.name,
        category=top[0].category,
        confidence=top[0].confidence,
        class_index=top[0].class_index,
        top_k=[x.as_dict() for x in top],
        hostname=host,
        latency_ms=latency_ms,
        model_version=served.version,
        etag=etag,
    )
