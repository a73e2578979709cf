"""The Faust app: `faust -A consumer.app worker -l info`.

Each worker takes batches of image keys from the topic (BATCH_SIZE, BATCH_WINDOW_S),
classifies them through consumer.batch, and acknowledges a batch's offsets only after its
rows are committed in PostgreSQL. The worker's start and stop live in
consumer.lifecycle.WorkerLifecycle; this module only wires it into Faust.

Why `noack_take` and our own acks rather than `take_events`: take_events acknowledges the
buffered events in a `finally` after its `yield`, so the acks also run when the generator is
closed — an exception escaping the body, the agent cancelled at shutdown — i.e. for a batch
whose rows were never written. With noack_take nothing is acknowledged unless the loop body
reaches `stream.ack`, which it does only after the batch's transaction committed.

Why `stream_wait_empty=False`: with it on, Faust's shutdown and every rebalance wait, with
no bound, until every event taken from Kafka is acknowledged; a batch waiting out a
PostgreSQL outage then holds a SIGTERM for as long as the outage. The
lifecycle's bounded drain replaces that wait. An event never acknowledged is never
committed: Faust commits only a contiguous run of acknowledged offsets and discards commits
for partitions it no longer owns, so the next owner redoes it (the upsert absorbs it).
"""

from __future__ import annotations

import logging
import ssl
import sys
from typing import Optional

import faust

# `faust -A consumer.app` imports this module with the working directory on sys.path only
# for the import itself: the project's other top-level packages are imported now, so that
# their submodules (imported lazily later) are found through the packages themselves.
import common  # noqa: F401
import db  # noqa: F401
from common.reach import quiet
from consumer.lifecycle import WorkerLifecycle, dead_letter_sender
from consumer.messages import Message
from settings import Settings, get_settings

log = logging.getLogger(__name__)


def _settings() -> Settings:
    """The worker's settings; `faust -A consumer.app worker --help` must not need valid ones."""
    if {"--help", "-h"} & set(sys.argv[1:]):
        try:
            return get_settings()
        except SystemExit:
            return Settings.model_construct()  # the defaults, unvalidated: only the help text is read
    return get_settings()


settings = _settings()


def _preflight() -> None:
    """`faust -A consumer.app worker` with Kafka unreachable or a service misconfigured: one
    line and exit 2, not minutes of retries and a traceback (consumer/preflight.py). Only at
    start: a worker that loses a broker later keeps trying."""
    if len(sys.argv) > 1 and "worker" in sys.argv[1:] and not {"--help", "-h"} & set(sys.argv[1:]):
        from consumer.preflight import problem

        line = problem(settings)
        if line:
            print(f"error: {line}", file=sys.stderr)
            sys.exit(2)


_preflight()


def _credentials() -> Optional[faust.types.auth.CredentialsT]:
    proto = settings.kafka_security_protocol
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    context = ssl.create_default_context(cafile=cafile) if proto.endswith("SSL") else None
    if context is not None and settings.kafka_ssl_certfile:  # mutual TLS
        context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    if proto.startswith("SASL"):
        password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    return faust.SSLCredentials(context) if context else None


def restore_root_log_level(root: logging.Logger) -> None:
    """At `-l warn` and above Faust's startup spinner sets the root logger to DEBUG (so its
    handler can spin on every record) and leaves it there: every library then builds debug
    records nothing prints, which costs measurable CPU. Put the root back at the lowest
    level a real handler wants."""
    from faust.utils.terminal.spinners import SpinnerHandler

    levels = [h.level for h in root.handlers if not isinstance(h, SpinnerHandler)]
    if root.level == logging.DEBUG and levels and min(levels) > logging.DEBUG:
        root.setLevel(min(levels))


class WorkerApp(faust.App):
    """faust.App with the worker's lifecycle hooked where Faust's own order needs it: start
    before the consumer joins the group, drain before Faust stops the consumer (its on_stop
    runs before its children's), close after everything stopped."""

    lifecycle: WorkerLifecycle

    def on_init_dependencies(self):
        # Health and metrics are on METRICS_PORT; Faust's own web server (port 6066 by
        # default, so a second worker on a host would die on EADDRINUSE) only when asked for.
        if settings.worker_web_port is None:
            self.conf.web_enabled = False
        else:
            self.conf.web_port = settings.worker_web_port
        return super().on_init_dependencies()

    async def on_start(self) -> None:
        await super().on_start()
        await self.lifecycle.start()

    async def on_started(self) -> None:
        await super().on_started()
        restore_root_log_level(logging.getLogger())

    async def on_stop(self) -> None:
        await self.lifecycle.drain()
        await super().on_stop()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        self.lifecycle.close()


app = WorkerApp(
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
    # also commit after about every batch: a rebalance (any worker joining or leaving) drops the
    # acknowledged-but-uncommitted offsets of every member, and their images are done again
    broker_commit_every=settings.batch_size,
    stream_wait_empty=False,
    # declare no topic: the image and dead-letter topics are created (or checked) by
    # consumer/lifecycle.py, and a worker on a secured cluster may create none (faust-streaming
    # #449); no leader election either, which needs a topic of its own and nothing here uses
    topic_allow_declare=False,
    topic_disable_leader=True,
)
# a worker that loses a broker retries as before; each kind of retry line once per QUIET_S
for _library in ("aiokafka", "faust.transport"):
    quiet(_library)
image_keys = app.topic(settings.kafka_topic, key_type=bytes, value_type=bytes, partitions=settings.kafka_partitions)
dead_letters = (
    app.topic(settings.kafka_dead_letter_topic, key_type=bytes, value_type=bytes)
    if settings.kafka_dead_letter_topic
    else None
)


def _build_processor():
    """The process's one BatchProcessor, serving every model on one trunk; runs in WorkerLifecycle.start."""
    from consumer import metrics
    from consumer.batch import BatchProcessor
    from consumer.fetch import S3Images
    from consumer.serving import load_model_set
    from consumer.sink import RowWriter
    from db.connection import connect

    models, loader = load_model_set(settings)
    return BatchProcessor(
        settings,
        models,
        S3Images.from_settings(settings),
        RowWriter(lambda: connect(settings)),
        dead_letter_sender(dead_letters) if dead_letters is not None else None,
        on_retry=lambda reason: metrics.RETRIES.labels(reason).inc(),
        loader=loader,
    )


app.lifecycle = WorkerLifecycle(settings, _build_processor)


@app.agent(image_keys)
async def classify_images(stream: faust.StreamT) -> None:
    async for events in stream.noack_take(settings.batch_size, within=settings.batch_window_s):
        messages = [
            Message(e.message.value, e.message.partition, e.message.offset, e.message.timestamp) for e in events
        ]
        report = await app.lifecycle.run_batch(messages)
        if report is None:
            # abandoned (stopping): never acknowledge it; wait here until Faust stops the agent
            await app.lifecycle.stopped.wait()
            return
        for event in events:  # only now: the batch's rows are committed
            await stream.ack(event)
