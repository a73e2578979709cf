"""The pipeline's throughput and latency on a local stack of its own, against the machine's
limit and the original project's way of consuming. Prints JSON and draws a PNG.

    python -m benchmarks.pipeline [--images 4000] [--workers 2] [--out-dir benchmarks/results]

1. limit: decode + model with all cores, images in memory, the better of two ways to use
   them (benchmarks/inference.py), measured before and after the rest;
2. warm-up: --warmup-images through the pipeline before each engine's run, because a freshly
   started JVM (s3proxy, Kafka) spends its first thousands of requests compiling (s3proxy's CPU
   per GET as it warms: benchmarks/HISTORY.md). A production stack is long-running, so the
   measured runs start warm, and each engine after the same warm-up (with one warm-up only, the
   first engine measured met colder services); the first warm-up's rate is reported as
   cold_pipeline_img_s;
3. pipeline: N images (the dev photos uploaded repeatedly under distinct keys) through
   producer -> W faust workers -> PostgreSQL, measured from the first to the last row written;
4. latency: keys sent at half the measured rate (--rate), key sent -> row written p50/p95;
5. baseline: the seed-style consumer (benchmarks/seed_baseline.py), W processes;
6. with --embeddings-cost, step 3 again with EMBEDDINGS=false: the CPU (workers, PostgreSQL)
   and the write-ahead-log bytes per image that storing each image's embedding costs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import cpu
from benchmarks.inference import limit_rates
from benchmarks.local_stack import bench_settings, dev_photos, temporary_stack, upload_copies
from benchmarks.plot import draw, throughput
from benchmarks.wal import wal_position, wal_since
from common.imaging import find_images
from common.kafka_admin import ensure_topic
from db.connection import connect
from infra.fleet import Fleet, fleet_env, run, truncate
from settings import Settings

HERE = Path(__file__).resolve().parent


def row_times(settings: Settings) -> list[tuple[float, float]]:
    """(epoch seconds written, latency seconds) of every result row, oldest first."""
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM time), latency_ms FROM prediction_results ORDER BY time")
            return [(float(t), (lat or 0) / 1000) for t, lat in cur.fetchall()]
    finally:
        conn.close()


def sent_to_written(settings: Settings) -> tuple[float, list[float]]:
    """(images per second from the first key sent to the last row written, every row's latency):
    the send times taken from the rows (written - latency), so that a first batch's or a
    micro-batch's wait counts like the rest."""
    rows = row_times(settings)
    if not rows:
        return 0.0, []
    first_sent = min(t - lat for t, lat in rows)
    return len(rows) / (rows[-1][0] - first_sent), [lat for _, lat in rows]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def variant(settings: Settings, env: dict, name: str) -> tuple[Settings, dict]:
    """The settings and worker environment of one run: its own topic and consumer group."""
    topic, app_id = f"{settings.kafka_topic}-{name}", f"{settings.faust_app_id}-{name}"
    return (
        settings.model_copy(update={"kafka_topic": topic, "faust_app_id": app_id}),
        {**env, "KAFKA_TOPIC": topic, "FAUST_APP_ID": app_id},
    )


def start_workers(fleet: Fleet, workers: int, threads: int) -> None:
    """Start the workers and wait until all are in the group: with keys sent earlier, the first
    to join works alone for a while and the run measures the join, not the consumers."""
    for i in range(workers):
        fleet.start(f"{fleet.tag}-{i + 1}", threads=threads)
    fleet.wait_for("the consumer group", lambda: fleet.members() == workers, 300)


def run_fleet(
    settings,
    env,
    tag,
    workers,
    threads,
    keys_to_send,
    producer_args=(),
    command=None,
    services: dict[str, int] | None = None,
):
    """Start the workers, wait until the group is stable, send keys, wait for every row.
    Returns the seconds the producer took, the workers' stage seconds, and (with `services`,
    name -> pid) the CPU seconds each service and the workers used while the keys were processed."""
    fleet = Fleet(settings, env, tag, **({"command": command} if command else {}))
    ensure_topic(settings)  # idempotent; the seed-style consumer, unlike faust workers, does not create it
    try:
        start_workers(fleet, workers, threads)
        pids = cpu.with_workers(services or {}, fleet.procs)
        before = cpu.snapshot(pids)
        started = time.monotonic()
        run([sys.executable, "-m", "producer", "--limit", str(keys_to_send), *producer_args], env)
        sent_s = time.monotonic() - started
        fleet.wait_rows(keys_to_send, 1800)
        cpu_seconds = cpu.grouped(cpu.used(before, cpu.snapshot(pids)))
        stages = {}
        if command is None:
            for name in fleet.procs:
                samples = fleet.samples(name)
                for stage in ("download", "decode", "infer", "write"):
                    busy = fleet.metric(name, "vs_stage_seconds_sum", samples, stage=stage)
                    stages[stage] = stages.get(stage, 0.0) + busy
                for stage in ("decode", "infer"):  # thread CPU, not busy time (threads wait for cores)
                    key = f"{stage}_cpu"
                    used = fleet.metric(name, "vs_stage_cpu_seconds_total", samples, stage=stage)
                    stages[key] = stages.get(key, 0.0) + used
        return sent_s, stages, cpu_seconds
    finally:
        fleet.stop()


def embedding_cost(fig: dict, images: int) -> dict:
    """What storing embeddings costs per image: the run with them against the run without
    (--embeddings-cost), CPU ms of the workers and of PostgreSQL, WAL bytes, and throughput."""
    on, off = fig["pipeline_cpu_seconds"], fig["without_embeddings"]["pipeline_cpu_seconds"]

    def ms(cpu: dict, key: str) -> float:
        return round(1000 * cpu.get(key, 0.0) / images, 2)

    return {
        "workers_cpu_ms": {"with": ms(on, "workers"), "without": ms(off, "workers")},
        "postgres_cpu_ms": {"with": ms(on, "postgres"), "without": ms(off, "postgres")},
        "wal_bytes": {"with": fig["wal_bytes_per_image"], "without": fig["without_embeddings"]["wal_bytes_per_image"]},
        "pipeline_img_s": {"with": fig["pipeline_img_s"], "without": fig["without_embeddings"]["pipeline_img_s"]},
    }


def per_image(figures: dict, cores: int, images: int, limit: float) -> dict:
    """CPU milliseconds per image: the limit's (every core busy at limit_img_s), the workers'
    by stage (decode and infer: the CPU of the threads running them; the rest is S3 GETs,
    Faust, psycopg2 and Python), and each service's; with the ratio that says how far the workers are from
    spending only what the limit spends."""
    cpu, stages = figures["pipeline_cpu_seconds"], figures["worker_stage_seconds"]
    ms = {name: round(1000 * sec / images, 2) for name, sec in cpu.items()}
    decode, infer = (round(1000 * stages.get(k, 0.0) / images, 2) for k in ("decode_cpu", "infer_cpu"))
    return {
        "limit": round(1000 * cores / limit, 2) if limit else None,
        "workers": ms.pop("workers"),
        "workers_decode": decode,
        "workers_infer": infer,
        "workers_other": round(1000 * cpu["workers"] / images - decode - infer, 2),
        "services": ms,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=4000, help="images through the pipeline")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partitions", type=int, help="partitions of the benchmark's topics (default KAFKA_PARTITIONS)")
    ap.add_argument("--threads", type=int, help="TORCH_THREADS and DECODE_WORKERS per worker (default cores / workers)")
    ap.add_argument("--engine", action="append", help="MODEL_ENGINE to measure (repeat to compare in one run)")
    ap.add_argument("--warmup-images", type=int, default=10000, help="before each engine (0: none)")
    ap.add_argument("--latency-images", type=int, default=600)
    ap.add_argument("--baseline-images", type=int, default=1000)
    ap.add_argument(
        "--embeddings-cost",
        action="store_true",
        help="run each engine's pipeline again with EMBEDDINGS=false: what storing them costs per image",
    )
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = args.threads or max(1, cores // args.workers)
    base = Settings()
    engines = args.engine or [base.model_engine]
    partitions = args.partitions or base.kafka_partitions
    dev = dev_photos(base)
    blobs = [p.read_bytes() for p in find_images(dev)]
    # Measured before and after the stack runs; the higher figure is the limit, so that a noisy
    # neighbour during one measurement cannot flatter the ratio. (Also builds the int8 graph
    # once, in MODEL_CACHE_DIR, before any worker starts.)
    limit_settings = {
        e: base.model_copy(update={"torch_threads": cores, "decode_workers": cores, "model_engine": e}) for e in engines
    }
    print(f"measuring the single-machine limit ({', '.join(engines)})...", file=sys.stderr)
    limits = {e: [limit_rates(limit_settings[e], blobs, 10.0)] for e in engines}

    per_engine: dict[str, dict] = {}
    upload_s = cold_img_s = None
    print("starting the local stack...", file=sys.stderr)
    with temporary_stack() as cfg:
        settings = bench_settings("bench", kafka_partitions=partitions)
        env = {**fleet_env(settings, {**os.environ}), "KAFKA_PARTITIONS": str(partitions)}
        started = time.monotonic()
        # every run sends distinct keys: as many as the largest one needs
        upload_copies(settings, dev, max(args.images, args.warmup_images, args.latency_images, args.baseline_images))
        upload_s = round(time.monotonic() - started, 1)

        for engine in engines:
            engine_env, short = {**env, "MODEL_ENGINE": engine}, engine.replace("-", "")
            if args.warmup_images:
                print(f"warm-up ({engine}): {args.warmup_images} images...", file=sys.stderr)
                s, e = variant(settings, engine_env, f"warmup{short}")
                run_fleet(s, e, "warmup", args.workers, threads, args.warmup_images)
                if cold_img_s is None:
                    cold_img_s = round(throughput([t for t, _ in row_times(settings)]), 1)
                truncate(settings)
            s, e = variant(settings, engine_env, short)
            print(f"pipeline ({engine}): {args.images} images, {args.workers} workers...", file=sys.stderr)
            wal = wal_position(settings)
            sent_s, stages, cpu_seconds = run_fleet(
                s, e, "worker", args.workers, threads, args.images, services=cpu.service_pids(cfg)
            )
            wal_bytes = wal_since(settings, wal)
            pipe = row_times(settings)
            img_s = throughput([t for t, _ in pipe])
            without = None
            if args.embeddings_cost:
                truncate(settings)
                print(f"pipeline ({engine}) with EMBEDDINGS=false...", file=sys.stderr)
                s2, e2 = variant(settings, {**engine_env, "EMBEDDINGS": "false"}, f"noemb{short}")
                wal2 = wal_position(settings)
                _, stages2, cpu2 = run_fleet(
                    s2, e2, "worker", args.workers, threads, args.images, services=cpu.service_pids(cfg)
                )
                without = {
                    "pipeline_img_s": round(throughput([t for t, _ in row_times(settings)]), 1),
                    "pipeline_cpu_seconds": cpu2,
                    "worker_stage_seconds": {k: round(v, 1) for k, v in stages2.items()},
                    "wal_bytes_per_image": round(wal_since(settings, wal2) / args.images),
                }
            rate = max(1.0, img_s / 2)
            print(f"latency ({engine}) at {rate:.1f} keys/s...", file=sys.stderr)
            truncate(settings)
            s, e = variant(settings, engine_env, f"latency{short}")
            run_fleet(s, e, "latency", args.workers, threads, args.latency_images, ("--rate", f"{rate:.2f}"))
            latencies = [lat for _, lat in row_times(settings)]
            truncate(settings)
            per_engine[engine] = {
                "pipeline_img_s": round(img_s, 1),
                "pipeline_img_s_per_core": round(img_s / cores, 1),
                "pipeline_s": round(pipe[-1][0] - pipe[0][0], 1),
                "produce_s": round(sent_s, 1),
                "worker_stage_seconds": {k: round(v, 1) for k, v in stages.items()},
                "pipeline_cpu_seconds": cpu_seconds,
                "latency_rate_img_s": round(rate, 1),
                "latency_p50_s": round(percentile(latencies, 0.5), 3),
                "latency_p95_s": round(percentile(latencies, 0.95), 3),
                "pipe_times": [t for t, _ in pipe],
                "wal_bytes_per_image": round(wal_bytes / args.images),
            }
            if without:
                per_engine[engine]["without_embeddings"] = without

        print(f"seed-style baseline: {args.baseline_images} images...", file=sys.stderr)
        run_fleet(
            *variant(settings, env, "seed"),
            "seed",
            args.workers,
            threads,
            args.baseline_images,
            command=(sys.executable, "-m", "benchmarks.seed_baseline"),
        )
        baseline = [t for t, _ in row_times(settings)]
        baseline_img_s = throughput(baseline)
    print("measuring the single-machine limit again...", file=sys.stderr)
    for e in engines:
        limits[e].append(limit_rates(limit_settings[e], blobs, 10.0))

    for engine, fig in per_engine.items():
        limit = max(max(ways.values()) for ways in limits[engine])
        fig["limit_img_s"] = round(limit, 1)
        fig["limit_samples_img_s"] = limits[engine]
        fig["ratio_to_limit"] = round(fig["pipeline_img_s"] / limit, 3) if limit else None
        fig["speedup_vs_baseline"] = round(fig["pipeline_img_s"] / baseline_img_s, 2) if baseline_img_s else None
        fig["cpu_ms_per_image"] = per_image(fig, cores, args.images, limit)
        ms = fig["cpu_ms_per_image"]
        fig["worker_cpu_over_limit_cpu"] = round(ms["workers"] / ms["limit"], 2) if ms["limit"] else None
        if "without_embeddings" in fig:
            fig["embedding_cost"] = embedding_cost(fig, args.images)
    first = per_engine[engines[0]]
    figures = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {cores} cores ({platform.node()})".strip(),
        "engines": {e: {k: v for k, v in f.items() if k != "pipe_times"} for e, f in per_engine.items()},
        "baseline_img_s": round(baseline_img_s, 1),
        "cold_pipeline_img_s": cold_img_s,
        "warmup_images": args.warmup_images,
        "upload_s": upload_s,
        "images": args.images,
        "workers": args.workers,
        "partitions": partitions,
        "torch_threads_per_worker": threads,
        "batch_size": settings.batch_size,
        "cpu_count": cores,
    }
    # the headline keys of earlier runs: the first engine's
    for key in ("limit_img_s", "pipeline_img_s", "ratio_to_limit", "speedup_vs_baseline", "latency_p95_s"):
        figures[key] = first[key]
    figures["engine"] = engines[0]
    if "onnxruntime" in per_engine and "onnxruntime-int8" in per_engine:
        fp32, int8 = per_engine["onnxruntime"], per_engine["onnxruntime-int8"]
        figures["int8_over_fp32_pipeline"] = round(int8["pipeline_img_s"] / fp32["pipeline_img_s"], 2)
        figures["int8_over_fp32_limit"] = round(int8["limit_img_s"] / fp32["limit_img_s"], 2)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = f"pipeline-w{args.workers}-p{partitions}-t{threads}" + ("-" + "-".join(engines) if args.engine else "")
    (args.out_dir / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    draw(
        args.out_dir / f"{name}.png",
        first["pipe_times"],
        baseline,
        first["worker_stage_seconds"],
        {**figures, "engine": engines[0]},
    )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
