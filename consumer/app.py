"""The Faust app: `faust -A consumer.app worker -l info`.

Each worker takes batches of image keys from the topic (BATCH_SIZE, BATCH_WINDOW_S),
classifies them through consumer.batch, and acknowledges a batch's offsets only after
its rows are committed in PostgreSQL (take_events acks once the loop body returns).
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
from typing import Optional

import faust

from consumer import metrics
from consumer.batch import BatchProcessor, Message
from db.queries import PredictionError
from settings import get_settings

log = logging.getLogger(__name__)
settings = get_settings()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _credentials() -> Optional[faust.types.auth.CredentialsT]:
    proto = settings.kafka_security_protocol.upper()
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(cafile=cafile) if proto.endswith("SSL") else None
    if proto.startswith("SASL"):
        return faust.SASLCredentials(username=settings.kafka_sasl_username,
                                     password=settings.kafka_sasl_password,
                                     mechanism=settings.kafka_sasl_mechanism or "PLAIN",
                                     ssl_context=context)
    return faust.SSLCredentials(context) if context else None


app = faust.App(
    settings.faust_app_id,
    broker=[f"kafka://{host}" for host in settings.kafka_bootstrap_servers.split(",")],
    broker_credentials=_credentials(),
    key_serializer="raw",
    value_serializer="raw",
    topic_partitions=settings.kafka_partitions,
    topic_replication_factor=settings.kafka_replication_factor,
    consumer_auto_offset_reset="earliest",
    datadir=str(settings.faust_datadir),
    broker_session_timeout=settings.broker_session_timeout_s,
    broker_heartbeat_interval=settings.broker_heartbeat_interval_s,
    broker_commit_interval=settings.broker_commit_interval_s,
    # several workers per host must not fight over one web port
    web_port=settings.worker_web_port or _free_port(),
)
image_keys = app.topic(settings.kafka_topic, key_type=bytes, value_type=bytes,
                       partitions=settings.kafka_partitions)

dead_letters = (app.topic(settings.kafka_dead_letter_topic, key_type=bytes, value_type=bytes)
                if settings.kafka_dead_letter_topic else None)


async def publish_dead_letters(failures: list[tuple[Message, PredictionError]]) -> None:
    """One message per image that could not be classified: key = image key, value = JSON reason."""
    for msg, err in failures:
        reason = {"image_key": err.image_key, "model": err.model, "error_type": err.error_type,
                  "detail": err.detail, "hostname": err.hostname, "partition": msg.partition, "offset": msg.offset}
        await dead_letters.send(key=err.image_key.encode("utf-8"), value=json.dumps(reason).encode())


_processor: Optional[BatchProcessor] = None


def processor() -> BatchProcessor:
    """The process's one BatchProcessor (and so its one model), built on first use."""
    global _processor
    if _processor is None:
        from consumer.model import load_classifier
        from db.connection import connect

        _processor = BatchProcessor(settings, load_classifier(settings), settings.s3_client(),
                                    lambda: connect(settings),
                                    publish_dead_letters if dead_letters is not None else None)
    return _processor


@app.on_worker_init.connect
def _prepare_worker(app: faust.App, **kwargs) -> None:
    # before consuming: fail fast on missing weights; create the topic with the right
    # partition count (a broker's auto-create would use its own default)
    from producer.topic import ensure_topic

    processor()
    metrics.serve(settings.metrics_port)
    ensure_topic(settings)
    if settings.kafka_dead_letter_topic:
        ensure_topic(settings, name=settings.kafka_dead_letter_topic)


def restore_root_log_level(root: logging.Logger) -> None:
    """At `-l warn` and above Faust's startup spinner sets the root logger to DEBUG (so its
    handler can spin on every record) and leaves it there: every library then builds debug
    records nothing prints, which costs measurable CPU. Put the root back at the lowest
    level a real handler wants."""
    from faust.utils.terminal.spinners import SpinnerHandler

    levels = [h.level for h in root.handlers if not isinstance(h, SpinnerHandler)]
    if root.level == logging.DEBUG and levels and min(levels) > logging.DEBUG:
        root.setLevel(min(levels))


@app.task
async def _after_startup() -> None:
    restore_root_log_level(logging.getLogger())


@app.agent(image_keys)
async def classify_images(stream: faust.StreamT) -> None:
    async for events in stream.take_events(settings.batch_size, within=settings.batch_window_s):
        messages = [Message(e.message.value, e.message.partition, e.message.offset, e.message.timestamp)
                    for e in events]
        metrics.IN_FLIGHT.inc(len(messages))
        try:
            report = await processor().process_until_done(messages)
        finally:
            metrics.IN_FLIGHT.dec(len(messages))
        metrics.record(report)
        log.info("batch %d: %d classified, %d errors; %s", report.size, report.classified, report.failed,
                 " ".join(f"{k}={v * 1000:.0f}ms" for k, v in report.seconds.items()))
