"""This pipeline against the Spark Structured Streaming job a data engineer would write instead
(benchmarks/spark_job.py), side by side on one local stack, in one run, repeated: each repeat
runs both on the same keys, in turn, after one warm-up of each.

Both read the same topic layout (KAFKA_PARTITIONS), GET the same objects from S3, decode the
same way and run the same ONNX graph with ONNX Runtime on one thread per worker (the pipeline:
W faust workers; Spark: local[cores], one Python worker per core), and write the same rows to
PostgreSQL. Per system and repeat:
- throughput: images / (last row written - first key sent), the key sent times taken from the
  rows themselves (written - latency), so a micro-batch's wait is counted like a worker's;
- CPU per image of the system (the workers; Spark's JVM, its Python workers and the driver)
  and of each service, while the keys were processed;
- latency at half the system's own median throughput: key sent -> row written, p50 and p95;
- whether both wrote the same rows (same category and class per key, confidence to 1e-4).
With Ray Data installed, each repeat also runs benchmarks/ray_peer.py (local files, no
services: an easier job) for its images/s. The JSON gives every repeat and the median with
min-max; the PNG draws them.

Optional: `pip install -e '.[spark]'` (PySpark 4.2, Java 17), `VS_WITH_SPARK=1 infra/install.sh`
(the Kafka source's jars), `pip install -e '.[ray]'`.

    python -m benchmarks.spark_peer [--images 2000] [--repeats 3] [--out-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import cpu
from benchmarks.local_stack import bench_settings, dev_photos, temporary_stack, upload_copies
from benchmarks.pipeline import percentile, run_fleet, sent_to_written, truncate, variant
from common.imaging import find_images
from common.kafka_admin import ensure_topic
from db.connection import connect
from infra.fleet import fleet_env, run
from settings import Settings

HERE = Path(__file__).resolve().parent


def wait_rows(settings: Settings, n: int, timeout: float, query=None) -> None:
    """Until `n` rows: polled once a second on one connection, as the pipeline's harness polls
    (infra.fleet), so that neither system is charged more for being watched."""
    deadline = time.monotonic() + timeout
    conn = connect(settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            while True:
                cur.execute(
                    "SELECT (SELECT count(*) FROM prediction_results) + (SELECT count(*) FROM prediction_errors)"
                )
                done = cur.fetchone()[0]
                if done >= n:
                    return
                if query is not None and query.exception() is not None:
                    raise RuntimeError(f"the Spark query failed: {query.exception()}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{done} of {n} rows after {timeout:.0f} s")
                time.sleep(1)
    finally:
        conn.close()


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spark_run(spark, job, settings: Settings, env: dict, keys: int, producer_args, services, **query):
    """One streaming query over a topic of its own, warmed with a first micro-batch (Spark stops
    Python workers idle for a minute, so each run would otherwise import and build its model
    inside the measurement), then the keys sent by the project's producer. Returns the CPU
    seconds used until every row was written, and Spark's own split of them (its JVM, its
    Python workers, the driver's foreachBatch)."""
    ensure_topic(settings)
    checkpoint = tempfile.mkdtemp(prefix="vs-spark-checkpoint-")
    q = job.start_query(spark, settings, checkpoint=checkpoint, **query)
    try:
        deadline = time.monotonic() + 300
        while q.lastProgress is None:  # the first trigger has run: the query is up
            if q.exception() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Spark query did not start: {q.exception()}")
            time.sleep(0.2)
        warm = 2 * spark.sparkContext.defaultParallelism * settings.batch_size
        run([sys.executable, "-m", "producer", "--limit", str(warm)], env)
        wait_rows(settings, warm, 600, q)
        truncate(settings)
        jvm = job.java_pid(spark)
        pids = {"spark": jvm, **services}
        before, driver, jvm_before = cpu.snapshot(pids), own_cpu(), cpu.own_seconds(jvm)
        run([sys.executable, "-m", "producer", "--limit", str(keys), *producer_args], env)
        wait_rows(settings, keys, 1800, q)
        used = cpu.used(before, cpu.snapshot(pids))
        jvm_used, driver_used = cpu.own_seconds(jvm) - jvm_before, own_cpu() - driver
        parts = {"jvm": jvm_used, "python_workers": used["spark"] - jvm_used, "driver": driver_used}
        used["spark"] = used.pop("spark") + driver_used
        return used, parts
    finally:
        q.stop()
        shutil.rmtree(checkpoint, ignore_errors=True)


def answers(settings: Settings) -> dict[str, tuple]:
    """image key -> (category, class index, confidence) of every row written."""
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT image_key, category, class_index, confidence FROM prediction_results")
            return {k: (c, i, float(p)) for k, c, i, p in cur.fetchall()}
    finally:
        conn.close()


def agreement(a: dict[str, tuple], b: dict[str, tuple]) -> dict:
    """Whether two systems wrote the same rows: the same keys, categories and classes, and
    confidences equal to float32 rounding."""
    same = [k for k in a.keys() & b.keys() if a[k][:2] == b[k][:2] and abs(a[k][2] - b[k][2]) < 1e-4]
    return {"keys": len(a), "other_keys": len(b), "same_rows": len(same)}


def ray_run(images: int, photos: int) -> dict:
    """Ray Data's figures (benchmarks/ray_peer.py: local files, no S3, Kafka or database)."""
    copies = max(1, round(images / photos))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.ray_peer", "--copies", str(copies)],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parent,
    ).stdout
    return json.loads(out)


def summary(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def record(used: dict, parts: dict, mine: str, images: int) -> dict:
    """One run's figures: the system's CPU ms per image (and Spark's split), the services'."""
    ms = {k: 1000 * v / images for k, v in used.items()}
    out = {
        "cpu_ms_per_image": round(ms.pop(mine), 2),
        "services_cpu_ms_per_image": {k: round(v, 2) for k, v in ms.items()},
    }
    if parts:
        out["cpu_ms_per_image_by_part"] = {k: round(1000 * v / images, 2) for k, v in parts.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.spark_peer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--images", type=int, default=2000, help="images per run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="the pipeline's faust workers")
    ap.add_argument("--warmup-images", type=int, default=1000, help="through each system first (0: none)")
    ap.add_argument("--latency-images", type=int, default=400)
    ap.add_argument("--max-offsets", type=int, default=1000, help="Spark's maxOffsetsPerTrigger")
    ap.add_argument("--tasks", type=int, help="Spark's minPartitions (default: one task per Kafka partition)")
    ap.add_argument("--without-ray", action="store_true", help="skip Ray Data even when it is installed")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    from benchmarks import spark_job
    from benchmarks.plot import draw_peers
    from benchmarks.ray_peer import graph_path
    from consumer.weights import imagenet_categories

    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    base = Settings()
    dev = dev_photos(base)
    query = {
        "graph": str(graph_path(base)),
        "categories": imagenet_categories(base.model_name),
        "max_per_trigger": args.max_offsets,
        "tasks": args.tasks,
    }
    photos = len(find_images(dev))
    with_ray = not args.without_ray and importlib.util.find_spec("ray") is not None
    runs: dict[str, list] = {"pipeline": [], "spark": [], "ray": []}
    latency, rows, ray_version = {}, {}, None
    with temporary_stack() as cfg:
        settings = bench_settings("peer", model_engine="onnxruntime")
        # the same job for both: Spark stores no embeddings, so neither does the pipeline here
        env = {**fleet_env(settings, {**os.environ}), "MODEL_ENGINE": "onnxruntime", "EMBEDDINGS": "false"}
        upload_copies(settings, dev, max(args.images, args.warmup_images, args.latency_images))
        print("starting Spark...", file=sys.stderr)
        spark = spark_job.session(cfg.libs_dir, cores)
        try:

            def pipeline(name: str, keys: int, producer_args=()):
                s, e = variant(settings, env, name)
                services = cpu.service_pids(cfg)
                return run_fleet(s, e, name, args.workers, threads, keys, producer_args, services=services)[2], {}

            def spark_(name: str, keys: int, producer_args=()):
                s, e = variant(settings, env, name)
                return spark_run(spark, spark_job, s, e, keys, producer_args, cpu.service_pids(cfg), **query)

            systems = {"pipeline": pipeline, "spark": spark_}
            mine = {"pipeline": "workers", "spark": "spark"}
            for name, go in systems.items():
                if args.warmup_images:
                    print(f"warm-up ({name}): {args.warmup_images} images...", file=sys.stderr)
                    go(f"{name}warm", args.warmup_images)
                    truncate(settings)
            for r in range(args.repeats):
                order = list(systems) if r % 2 == 0 else list(systems)[::-1]  # neither always first
                for name in order:
                    print(f"{name}, repeat {r + 1}: {args.images} images...", file=sys.stderr)
                    used, parts = systems[name](f"{name}{r}", args.images)
                    img_s, _ = sent_to_written(settings)
                    runs[name].append({"img_s": round(img_s, 1), **record(used, parts, mine[name], args.images)})
                    if r == 0:
                        rows[name] = answers(settings)
                    truncate(settings)
                if with_ray:
                    print(f"Ray Data, repeat {r + 1}...", file=sys.stderr)
                    ray = ray_run(args.images, photos)
                    runs["ray"].append(ray["img_s"])
                    ray_version = ray["ray"]
            for name, go in systems.items():
                rate = max(1.0, statistics.median(x["img_s"] for x in runs[name]) / 2)
                print(f"latency ({name}) at {rate:.1f} keys/s...", file=sys.stderr)
                go(f"{name}lat", args.latency_images, ("--rate", f"{rate:.2f}"))
                lat = sent_to_written(settings)[1]
                latency[name] = {
                    "rate_img_s": round(rate, 1),
                    "p50_s": round(percentile(lat, 0.5), 3),
                    "p95_s": round(percentile(lat, 0.95), 3),
                }
                truncate(settings)
            spark_version = spark.version
        finally:
            spark.stop()
    figures = {
        "machine": f"{cpu.model_name()}, {cores} cores",
        "images": args.images,
        "repeats": args.repeats,
        "pipeline_config": f"{args.workers} faust workers x {threads} thread(s), EMBEDDINGS=false",
        "spark_config": f"pyspark {spark_version} local[{cores}], maxOffsetsPerTrigger {args.max_offsets}"
        + (f", minPartitions {args.tasks}" if args.tasks else ", one task per Kafka partition"),
        "engine": "onnxruntime",
        "rows_agree": agreement(rows["pipeline"], rows["spark"]),
    }
    for name in systems:
        figures[name] = {
            "img_s": summary([x["img_s"] for x in runs[name]]),
            "cpu_ms_per_image": summary([x["cpu_ms_per_image"] for x in runs[name]]),
            "latency_at_half_rate": latency[name],
            "runs": runs[name],
        }
    p, s = figures["pipeline"], figures["spark"]
    figures["pipeline_over_spark_img_s"] = round(p["img_s"]["median"] / s["img_s"]["median"], 2)
    figures["spark_over_pipeline_cpu_ms"] = round(s["cpu_ms_per_image"]["median"] / p["cpu_ms_per_image"]["median"], 2)
    if runs["ray"]:
        figures["ray_data"] = {"img_s": summary(runs["ray"]), "runs": runs["ray"], "ray": ray_version}
        figures["pipeline_over_ray_img_s"] = round(p["img_s"]["median"] / statistics.median(runs["ray"]), 2)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "spark_peer.json").write_text(json.dumps(figures, indent=2) + "\n")
    draw_peers(args.out_dir / "spark_peer.png", figures)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
