"""Prometheus metrics of a worker, and its health endpoints, on METRICS_PORT (a free port,
logged, when unset):

    /metrics   Prometheus text format
    /healthz   liveness: answered by the process (200 while it can answer at all)
    /readyz    readiness: 200 once the model is loaded and the worker is not stopping, else 503
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

if TYPE_CHECKING:
    from consumer.messages import BatchReport

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

IMAGES = Counter("vs_images_classified_total", "Images classified and written")
ERRORS = Counter("vs_image_errors_total", "Images recorded as errors", ["error_type"])
BATCH_SIZE = Histogram("vs_batch_size", "Messages per batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
STAGE_SECONDS = Histogram("vs_stage_seconds", "Seconds per batch and stage", ["stage"], buckets=STAGE_BUCKETS)
END_TO_END_SECONDS = Histogram(
    "vs_end_to_end_seconds",
    "Key sent to Kafka -> row written, per image",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
IN_FLIGHT = Gauge("vs_images_in_flight", "Images taken from Kafka and not yet written")
# CPU of the thread doing the stage (time.thread_time): with TORCH_THREADS=1 ONNX Runtime runs
# on that thread, so this is the stage's whole CPU; the benchmark's per-stage CPU per image
STAGE_CPU = Counter("vs_stage_cpu_seconds", "CPU seconds of the thread running a stage", ["stage"])
RETRIES = Counter("vs_batch_retries_total", "Batch attempts that failed and were retried", ["reason"])
MODEL_LOADED = Gauge("vs_model_loaded", "1 once the worker's model is loaded")


def record(report: BatchReport) -> None:
    IMAGES.inc(report.classified)
    for error_type in report.error_types:
        ERRORS.labels(error_type).inc()
    BATCH_SIZE.observe(report.size)
    for stage, seconds in report.seconds.items():
        STAGE_SECONDS.labels(stage).observe(seconds)
    for latency in report.latencies_s:
        END_TO_END_SECONDS.observe(latency)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a hung scrape never blocks a probe, nor the process's exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - probes every few seconds would flood the log
        pass


def health_app(health: Callable[[], dict]):
    metrics_app = make_wsgi_app()

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            state = health()
            ok = path == "/healthz" or state.get("ready", False)
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
            return [json.dumps(state).encode()]
        return metrics_app(environ, start_response)

    return app


_serving_on: Optional[int] = None


def serve(port: Optional[int], health: Callable[[], dict] = lambda: {"ready": True}) -> int:
    """Start the metrics and health endpoint once per process; returns its port."""
    global _serving_on
    if _serving_on is None:
        server = make_server("0.0.0.0", port or 0, health_app(health), _Server, handler_class=_Quiet)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
        _serving_on = server.server_address[1]
        log.info("Prometheus metrics on http://0.0.0.0:%d/metrics (health: /healthz, /readyz)", _serving_on)
    return _serving_on
