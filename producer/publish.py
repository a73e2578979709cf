"""Sending image keys to Kafka with confluent-kafka's idempotent producer."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Optional

from confluent_kafka import KafkaError, Message, Producer

from common.reach import kafka_config
from settings import Settings

log = logging.getLogger(__name__)


@dataclass
class DeliveryReport:
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: int = 0  # input lines that could not be keys (never queued)
    first_errors: list[str] = field(default_factory=list)

    @property
    def undelivered(self) -> int:
        """Queued keys with no delivery report at all (neither delivered nor failed)."""
        return self.queued - self.delivered - self.failed

    def summary(self, seconds: float) -> str:
        rate = self.delivered / seconds if seconds > 0 else 0.0
        text = (
            f"sent {self.delivered} of {self.queued} keys in {seconds:.1f}s ({rate:.0f}/s); "
            f"failed {self.failed}; undelivered {self.undelivered}"
        )
        return text + (f"; skipped {self.skipped} lines that are not keys" if self.skipped else "")


class KeyPublisher:
    """Keys go out keyed by themselves (a key always lands in the same partition), value = key."""

    def __init__(self, settings: Settings, **overrides):
        self.topic = settings.kafka_topic
        self.report = DeliveryReport()
        self._producer = Producer(
            {
                **kafka_config(settings),
                "enable.idempotence": True,  # implies acks=all and no reordering/duplicates on retry
                "acks": "all",
                "linger.ms": 10,
                "delivery.timeout.ms": 120_000,
                **overrides,
            }
        )

    def _on_delivery(self, err: Optional[KafkaError], msg: Message) -> None:
        if err is None:
            self.report.delivered += 1
            return
        self.report.failed += 1
        if len(self.report.first_errors) < 5:
            self.report.first_errors.append(f"{msg.key()!r}: {err}")

    def send(self, key: str) -> None:
        data = key.encode("utf-8")
        while True:
            try:
                self._producer.produce(self.topic, key=data, value=data, on_delivery=self._on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain, then retry
                self._producer.poll(0.5)
        self.report.queued += 1
        self._producer.poll(0)

    def send_all(self, keys: Iterable[str], rate: Optional[float] = None, progress=None) -> DeliveryReport:
        interval = 1.0 / rate if rate else 0.0
        next_at = time.monotonic()
        for key in keys:
            if interval:
                next_at += interval
                # serve delivery reports while pacing (poll returns early after each one)
                while (delay := next_at - time.monotonic()) > 0:
                    self._producer.poll(delay)
            self.send(key)
            if progress is not None:
                progress.update(1)
        return self.flush()

    def flush(self, timeout: float = 120.0) -> DeliveryReport:
        left = self._producer.flush(timeout)
        if left:
            log.error("%d keys still undelivered after %.0fs", left, timeout)
        return self.report
