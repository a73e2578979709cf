"""The peer a data engineer would write instead of this pipeline: Spark Structured Streaming
reading the same topic with Spark's Kafka source, the same S3 GET, decode
(consumer.images.load_tensor) and ONNX graph in `mapInPandas` (Spark's pattern for batch
inference: the model built once per Python worker, ONNX Runtime on one thread per worker), and
the same rows written to PostgreSQL in `foreachBatch` with the project's own db.queries.write_batch.
Measured against the pipeline by benchmarks/spark_peer.py.

Optional: `pip install -e '.[spark]'` (PySpark 4.2, pandas below 3; Java 17) and the Kafka source's jars, which
`VS_WITH_SPARK=1 infra/install.sh` fetches from Maven Central into VS_LIBS_DIR/spark (passed as
spark.jars: nothing is resolved through Ivy at run time).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from settings import Settings

REPO = Path(__file__).resolve().parents[1]
SCHEMA = (
    "image_key string, category string, confidence double, class_index int, top_k string,"
    " sent double, error string, error_type string"
)
_worker_state: dict = {}  # per Python worker: the S3 client, the ONNX session, the categories


def spark_jars(libs_dir: Path) -> list[str]:
    jars = sorted(str(p) for p in (libs_dir / "spark").glob("*.jar"))
    if not jars:
        raise SystemExit(f"no Kafka source jars in {libs_dir / 'spark'}: run VS_WITH_SPARK=1 infra/install.sh")
    return jars


def session(libs_dir: Path, cores: int):
    """A local[cores] session with the Kafka source on its class path; its Python workers run
    this interpreter with the repository importable."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SystemExit("PySpark is not installed: pip install -e '.[spark]'") from None
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("visionscaling-spark-peer")
        .config("spark.jars", ",".join(spark_jars(libs_dir)))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(cores))
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )


def classify_partition(graph: str, settings: Settings, categories: list[str]):
    """mapInPandas' function: GET, decode and classify each micro-batch's keys in batches of
    BATCH_SIZE; a key that cannot be fetched or decoded gets an error instead of a category."""

    def run(frames: Iterator) -> Iterator:
        import numpy as np
        import pandas as pd
        from botocore.exceptions import ClientError

        from common.errors import ErrorType, ImageError
        from consumer.engines import onnx_session
        from consumer.images import load_tensor

        if "session" not in _worker_state:
            _worker_state["session"] = onnx_session(Path(graph), 1)
            _worker_state["s3"] = settings.s3_client()
        sess, s3 = _worker_state["session"], _worker_state["s3"]
        for frame in frames:
            rows: list[dict] = []
            tensors, ok = [], []
            for key, sent in zip(frame["image_key"], frame["sent"]):
                row = {"image_key": key, "sent": float(sent), "category": None, "confidence": None}
                row |= {"class_index": None, "top_k": None, "error": None, "error_type": None}
                try:
                    body = s3.get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()
                    tensors.append(load_tensor(body, settings.max_image_pixels, settings.fast_decode).numpy())
                    ok.append(row)
                except ImageError as exc:
                    row["error"], row["error_type"] = str(exc), str(exc.error_type)
                except ClientError as exc:
                    # a missing key: a row of its own; S3 failing: the task fails and Spark retries it
                    if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                        raise
                    row["error"], row["error_type"] = f"no such key: {key}", str(ErrorType.MISSING)
                rows.append(row)
            for start in range(0, len(tensors), settings.batch_size):
                logits = sess.run(None, {"input": np.stack(tensors[start : start + settings.batch_size])})[0]
                probs = np.exp(logits - logits.max(1, keepdims=True))
                probs /= probs.sum(1, keepdims=True)
                for row, p in zip(ok[start : start + settings.batch_size], probs):
                    top = np.argsort(-p)[: settings.top_k]
                    row["class_index"], row["confidence"] = int(top[0]), float(p[top[0]])
                    row["category"] = categories[int(top[0])]
                    row["top_k"] = json.dumps(
                        [
                            {"class_index": int(i), "category": categories[int(i)], "confidence": float(p[i])}
                            for i in top
                        ]
                    )
            yield pd.DataFrame(rows, columns=[c.split()[0] for c in SCHEMA.split(", ")])

    return run


def write_rows(settings: Settings, model: str, host: str):
    """foreachBatch's function: each micro-batch's rows in one transaction, on the driver."""
    from db.connection import connect
    from db.queries import ErrorRow, Prediction, write_batch

    state: dict = {}

    def write(frame, epoch_id: int) -> None:
        rows = frame.collect()
        if not rows:
            return
        now = time.time()
        predictions = [
            Prediction(
                image_key=r.image_key,
                model=model,
                category=r.category,
                confidence=r.confidence,
                class_index=r.class_index,
                top_k=json.loads(r.top_k),
                hostname=host,
                latency_ms=round((now - r.sent) * 1000, 1),
            )
            for r in rows
            if r.error is None
        ]
        errors = [ErrorRow(r.image_key, model, r.error_type, r.error[:1000], host) for r in rows if r.error]
        if state.get("conn") is None or state["conn"].closed:
            state["conn"] = connect(settings)
        write_batch(state["conn"], predictions, errors)

    return write


def start_query(
    spark, settings: Settings, graph: str, categories: list[str], max_per_trigger: int, checkpoint: str, tasks=None
):
    """The streaming query from the topic's first offset: Kafka -> mapInPandas -> foreachBatch.
    `tasks`: the Kafka source's minPartitions (None: one task per Kafka partition, Spark's
    default; more tasks per micro-batch cost more CPU here and gained no throughput)."""
    from pyspark.sql import functions as F

    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka_bootstrap_servers)
        .option("subscribe", settings.kafka_topic)
        .option("startingOffsets", "earliest")
        .option("maxOffsetsPerTrigger", str(max_per_trigger))
    )
    if tasks:
        source = source.option("minPartitions", str(tasks))
    source = source.load()
    keys = source.select(
        F.col("value").cast("string").alias("image_key"),
        (F.col("timestamp").cast("double")).alias("sent"),
    )
    classified = keys.mapInPandas(classify_partition(graph, settings, categories), SCHEMA)
    return (
        classified.writeStream.foreachBatch(write_rows(settings, settings.model_name, f"spark-{socket.gethostname()}"))
        .option("checkpointLocation", checkpoint)
        .start()
    )


def java_pid(spark) -> int:
    """The Spark JVM's pid: its CPU, with the Python workers it forks, is Spark's cost."""
    return spark.sparkContext._gateway.proc.pid
