"""Prometheus metrics of a worker, served on METRICS_PORT (a free port, logged, when unset)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from prometheus_client import Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from consumer.batch import BatchReport

log = logging.getLogger(__name__)

_STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

IMAGES = Counter("vs_images_classified_total", "Images classified and written")
ERRORS = Counter("vs_image_errors_total", "Images recorded as errors", ["error_type"])
BATCH_SIZE = Histogram("vs_batch_size", "Messages per batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
STAGE_SECONDS = Histogram("vs_stage_seconds", "Seconds per batch and stage", ["stage"], buckets=_STAGE_BUCKETS)
END_TO_END_SECONDS = Histogram("vs_end_to_end_seconds", "Key sent to Kafka -> row written, per image",
                               buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
IN_FLIGHT = Gauge("vs_images_in_flight", "Images taken from Kafka and not yet written")
RETRIES = Counter("vs_batch_retries_total", "Batch attempts that failed and were retried", ["reason"])


def record(report: "BatchReport") -> None:
    IMAGES.inc(report.classified)
    for error_type in report.error_types:
        ERRORS.labels(error_type).inc()
    BATCH_SIZE.observe(report.size)
    for stage, seconds in report.seconds.items():
        STAGE_SECONDS.labels(stage).observe(seconds)
    for latency in report.latencies_s:
        END_TO_END_SECONDS.observe(latency)


_serving_on: Optional[int] = None


def serve(port: Optional[int]) -> int:
    """Start the metrics endpoint once per process (Faust sends on_worker_init more than
    once); returns the port it listens on."""
    global _serving_on
    if _serving_on is None:
        server, _thread = start_http_server(port or 0)
        _serving_on = server.server_address[1]
        log.info("Prometheus metrics on http://0.0.0.0:%d/metrics", _serving_on)
    return _serving_on
