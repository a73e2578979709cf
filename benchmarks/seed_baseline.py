"""The consumer the original student project ran, for comparison only: one image per
message, downloaded to a temporary file, plain torch at batch 1, one INSERT (and commit)
per row. Same Kafka, S3, PostgreSQL, weights and preprocessing as the real workers.

    python -m benchmarks.seed_baseline      # settings from the environment, like a worker
"""

from __future__ import annotations

import json
import sys
import tempfile

from confluent_kafka import Consumer
from PIL import Image

from consumer.images import REFERENCE_TRANSFORM
from consumer.model import load_classifier
from db.connection import connect
from settings import get_settings


def main() -> int:
    settings = get_settings().model_copy(update={"model_engine": "torch", "top_k": 1})
    classifier = load_classifier(settings)
    s3 = settings.s3_client()
    conn = connect(settings)
    consumer = Consumer(
        {**settings.kafka_client_config(), "group.id": settings.faust_app_id, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([settings.kafka_topic])
    host = settings.hostname
    try:
        while True:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            key = msg.value().decode()
            with tempfile.NamedTemporaryFile(suffix=".img") as tmp:
                s3.download_file(settings.s3_bucket, key, tmp.name)
                tensor = REFERENCE_TRANSFORM(Image.open(tmp.name).convert("RGB"))
            (top,) = classifier.predict(tensor[None])
            with conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO prediction_results (image_key, model, category, confidence, class_index,"
                    " top_k, hostname) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (
                        key,
                        classifier.name,
                        top[0].category,
                        top[0].confidence,
                        top[0].class_index,
                        json.dumps([t.as_dict() for t in top]),
                        host,
                    ),
                )
    except KeyboardInterrupt:
        return 0
    finally:
        consumer.close()
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
