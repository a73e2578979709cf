"""A worker's life in one place: start (model, topics, metrics and health endpoints), the
batch in flight, and a bounded stop.

Stop (SIGTERM, a rolling deploy, a scale-down) runs before Faust stops its consumer: no new
batch starts; the batch in flight gets SHUTDOWN_TIMEOUT_S to be written (a batch waiting
out an outage is abandoned at once, there is nothing to wait for); an abandoned batch is
never acknowledged, so the next owner of its partitions redoes it. Then Faust commits what
was acknowledged and the consumer leaves the group, so the partitions move at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Optional

from consumer import metrics
from consumer.messages import BatchReport, Message
from consumer.rollout import ModelWatcher
from settings import BUILTIN_MODELS

if TYPE_CHECKING:
    from consumer.batch import BatchProcessor
    from db.queries import ErrorRow
    from settings import Settings

log = logging.getLogger(__name__)


class WorkerLifecycle:
    def __init__(self, settings: Settings, build_processor: Callable[[], BatchProcessor]):
        self.settings = settings
        self._build_processor = build_processor
        self.processor: Optional[BatchProcessor] = None
        self.stopping = False
        self.stopped = asyncio.Event()
        self._inflight: Optional[asyncio.Future] = None
        self.metrics_port: Optional[int] = None
        self.watcher: Optional[ModelWatcher] = None  # a registered model: new versions between batches

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Before the consumer joins its group: fail fast on missing weights; create the topics
        with the right partition count (a broker's auto-create would use its own default)."""
        from common.kafka_admin import ensure_topic

        loop = asyncio.get_running_loop()
        self.metrics_port = metrics.serve(self.settings.metrics_port, health=self.health)
        self.processor = await loop.run_in_executor(None, self._build_processor)
        registered = [n for n in self.settings.served_models if n not in BUILTIN_MODELS]
        if registered and self.processor.loader is not None:
            self.watcher = _registry_watcher(self.settings, registered, self.processor.loader)
            self.watcher.start(self.processor)
        await loop.run_in_executor(None, ensure_topic, self.settings)
        if self.settings.kafka_dead_letter_topic:
            await loop.run_in_executor(
                None, lambda: ensure_topic(self.settings, name=self.settings.kafka_dead_letter_topic)
            )
        metrics.MODEL_LOADED.set(1)

    def health(self) -> dict:
        """For the readiness probe: model loaded and not stopping."""
        return {"ready": self.processor is not None and not self.stopping, "stopping": self.stopping}

    # ------------------------------------------------------------------ batches

    async def run_batch(self, messages: Sequence[Message]) -> Optional[BatchReport]:
        """Process one batch to the end; None when it was abandoned (the worker is stopping):
        then the caller must not acknowledge it."""
        if self.stopping or self.processor is None:
            return None
        if self.watcher is not None:
            self.watcher.between_batches(self.processor)
        task = asyncio.ensure_future(self.processor.process_until_done(messages))
        self._inflight = task
        metrics.IN_FLIGHT.inc(len(messages))
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:  # the agent itself is cancelled: take the batch with it
            task.cancel()
            raise
        finally:
            self._inflight = None
            metrics.IN_FLIGHT.dec(len(messages))
        if task.cancelled():
            log.warning("batch of %d abandoned at shutdown, not acknowledged", len(messages))
            return None
        from consumer.batch import Abandoned

        exc = task.exception()
        if isinstance(exc, Abandoned):
            log.warning("%s", exc)
            return None
        if exc is not None:
            raise exc
        report = task.result()
        metrics.record(report)
        log.info(
            "batch %d: %d classified, %d errors; %s",
            report.size,
            report.classified,
            report.failed,
            " ".join(f"{k}={v * 1000:.0f}ms" for k, v in report.seconds.items()),
        )
        return report

    # ------------------------------------------------------------------ stop

    async def drain(self) -> None:
        """Finish or abandon the batch in flight within SHUTDOWN_TIMEOUT_S."""
        if self.stopping:
            return
        self.stopping = True
        started = time.monotonic()
        processor, task = self.processor, self._inflight
        if processor is not None:
            processor.stopping = True
        if task is not None and not task.done():
            timeout = 0.0 if processor is not None and processor.retrying else self.settings.shutdown_timeout_s
            done, _ = await asyncio.wait({task}, timeout=timeout)
            if not done:
                task.cancel()
                await asyncio.wait({task})
        log.info(
            "worker stopping: in-flight batch %s in %.1fs",
            "none"
            if task is None
            else ("written" if task.done() and not task.cancelled() and task.exception() is None else "abandoned"),
            time.monotonic() - started,
        )

    def close(self) -> None:
        """After the consumer stopped: thread pools and the database connection."""
        self.stopped.set()
        if self.watcher is not None:
            self.watcher.cancel()
        if self.processor is not None:
            self.processor.close()


def _registry_watcher(settings: Settings, names: list[str], loader) -> ModelWatcher:
    from db.connection import in_transaction
    from db.registry import serving_all

    return ModelWatcher(
        names,
        settings.model_poll_s,
        lambda: in_transaction(settings, lambda conn: serving_all(conn, names)),
        loader,
    )


def dead_letter_sender(topic) -> Callable:
    """A DeadLetterSink publishing one message per image: key = image key, value = JSON reason."""

    async def publish(failures: list[tuple[Message, ErrorRow]]) -> None:
        for msg, err in failures:
            reason = {
                "image_key": err.image_key,
                "model": err.model,
                "error_type": str(err.error_type),
                "detail": err.detail,
                "hostname": err.hostname,
                "partition": msg.partition,
                "offset": msg.offset,
            }
            await topic.send(key=err.image_key.encode("utf-8"), value=json.dumps(reason).encode())

    return publish
