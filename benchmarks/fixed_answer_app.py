"""A benchmark-only worker: the real one (consumer/app.py: the consumer group, the S3 GET of
every image, the batch's one transaction with its rows and embeddings, the offsets committed
after it) with the model taken out of the way: no decode, and a fixed answer after a fixed
sleep per image, which costs no CPU. Many of them on one machine put the load of a fleet on
Kafka, PostgreSQL and S3, which is what benchmarks/fleet_scale.py measures.

Never selectable by accident: it is not a MODEL_ENGINE, the image does not contain benchmarks/,
and it runs only as its own Faust app,

    FIXED_ANSWER_MS_PER_IMAGE=5 faust -A benchmarks.fixed_answer_app worker

With FIXED_ANSWER_LOG_DIR set, each worker appends "time partition offset sent" (sent: the
Kafka message's timestamp) to HOSTNAME.log there for every message whose row it has written,
after the transaction: the same message written twice is a redelivery
(benchmarks/scale_events.py).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from common.errors import ImageError
from consumer import app as worker
from consumer.heads import TopK
from consumer.lifecycle import WorkerLifecycle
from consumer.serving import ModelSet, Prediction, Served
from consumer.sink import RowWriter
from consumer.stages import ImageStages

MS_PER_IMAGE = float(os.environ.get("FIXED_ANSWER_MS_PER_IMAGE", "5"))
LOG_DIR = os.environ.get("FIXED_ANSWER_LOG_DIR")
ANSWER = [TopK(0, "fixed answer", 1.0)]
VECTOR = np.full(512, 512**-0.5, dtype=np.float32)  # an L2-normalised embedding, written like a real one


class FixedAnswerStages(ImageStages):
    """The GETs as the worker does them; no decode; the model's place taken by a sleep."""

    def _load(self, data):
        return (data, 0.0) if isinstance(data, ImageError) else (torch.zeros(1), 0.0)

    def _predict(self, part, models: ModelSet):
        took = MS_PER_IMAGE / 1000 * len(part)
        time.sleep(took)
        predictions = [Prediction(s, [ANSWER] * len(part), took) for s in models.production]
        return [i for i, _ in part], predictions, np.stack([VECTOR] * len(part)) if models.embed else None


class LoggedRowWriter(RowWriter):
    """RowWriter, and a line per message once its row is committed."""

    def __init__(self, connect, path: str):
        super().__init__(connect)
        self._log = open(path, "a", buffering=1)  # noqa: SIM115 - open for the worker's life

    def write(self, predictions, failures, *args, **kwargs):
        refused = super().write(predictions, failures, *args, **kwargs)
        now = time.time()
        written = {(m.partition, m.offset): m.timestamp or 0.0 for m, _ in [*predictions, *failures]}
        self._log.write("".join(f"{now:.3f} {p} {o} {sent:.3f}\n" for (p, o), sent in sorted(written.items())))
        return refused


def _build_processor():
    from consumer.batch import BatchProcessor
    from consumer.fetch import S3Images
    from consumer.lifecycle import dead_letter_sender
    from db.connection import connect

    settings = worker.settings
    models = ModelSet(
        production=tuple(Served(name, 0, head=None) for name in settings.served_models),
        shadows=(),
        trunks={},
        embed="fixed-answer" if settings.embeddings else None,
    )
    images = S3Images.from_settings(settings)
    return BatchProcessor(
        settings,
        models,
        images,
        LoggedRowWriter(lambda: connect(settings), f"{LOG_DIR}/{settings.hostname}.log")
        if LOG_DIR
        else RowWriter(lambda: connect(settings)),
        dead_letter_sender(worker.dead_letters) if worker.dead_letters is not None else None,
        stages=FixedAnswerStages(settings, images),
    )


app = worker.app
app.lifecycle = WorkerLifecycle(worker.settings, _build_processor)
