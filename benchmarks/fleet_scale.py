"""How far a fleet grows before the shared services give out: 4, 8, 16 and 24 workers over one
topic of 48 partitions, on one local stack, with the model taken out of the way
(benchmarks/fixed_answer_app.py: the real worker, the S3 GET, the rows and embeddings written in
one transaction per batch; no decode, a fixed answer after a CPU-free sleep per image), so that
what is measured is Kafka, PostgreSQL (with its counter triggers) and S3. Per fleet size:
rows written per second, CPU milliseconds per row of each service and of the workers, the
batch write time (mean and the p95's histogram bucket), how busy the machine was, and what
PostgreSQL's active backends were waiting on. From
the services' CPU per row: how many rows/s one core of each serves, and so how many machines
of a given throughput (--machine-img-s, e.g. benchmarks/spark_peer.py's pipeline figure of the
same session) one PostgreSQL / S3 server / Kafka broker of this size carries.

    python -m benchmarks.fleet_scale [--workers 4,8,16,24] [--partitions 48] [--images 12000]
        [--ms-per-image 20] [--machine-img-s 140] [--out-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from benchmarks import cpu
from benchmarks.local_stack import bench_settings, dev_photos, temporary_stack, upload_copies, worker_counts
from benchmarks.pipeline import sent_to_written, truncate, variant
from common.kafka_admin import ensure_topic
from consumer.metrics import STAGE_BUCKETS
from db.connection import connect
from infra.fleet import BIN, Fleet, counts, fleet_env, run
from settings import Settings

HERE = Path(__file__).resolve().parent
COMMAND = (str(BIN / "faust"), "-A", "benchmarks.fixed_answer_app", "worker", "-l", "warn")


def write_seconds(fleet: Fleet) -> dict:
    """The workers' batch write times, summed over the fleet: mean and the bucket holding p95."""
    total = count = 0.0
    buckets = {le: 0.0 for le in STAGE_BUCKETS}
    for name in fleet.procs:
        samples = fleet.samples(name)  # one scrape per worker for all its figures
        total += fleet.metric(name, "vs_stage_seconds_sum", samples, stage="write")
        count += fleet.metric(name, "vs_stage_seconds_count", samples, stage="write")
        for le in STAGE_BUCKETS:
            buckets[le] += fleet.metric(name, "vs_stage_seconds_bucket", samples, stage="write", le=str(float(le)))
    p95 = next((le for le in STAGE_BUCKETS if count and buckets[le] >= 0.95 * count), None)
    return {"batches": int(count), "mean_ms": round(1000 * total / count, 1) if count else None, "p95_le_s": p95}


class WaitSampler(threading.Thread):
    """Samples what PostgreSQL's active backends are waiting on (pg_stat_activity) every 0.25 s
    while a fleet writes: Lock (rows or advisory locks), LWLock, IO or WAL (commits), Client
    (a worker's next statement), or nothing (running on a CPU)."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True)
        self.settings, self.stopped, self.seen = settings, threading.Event(), Counter()

    def run(self) -> None:
        conn = connect(self.settings)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stopped.wait(0.25):
                    cur.execute(
                        "SELECT coalesce(wait_event_type, 'CPU'), count(*) FROM pg_stat_activity"
                        " WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                        " GROUP BY 1"
                    )
                    self.seen.update(dict(cur.fetchall()))
                    self.seen["samples"] += 1
        finally:
            conn.close()

    def result(self) -> dict:
        """Mean active backends per sample, by what they were waiting on."""
        samples = self.seen.pop("samples", 0) or 1
        return {kind: round(n / samples, 2) for kind, n in sorted(self.seen.items())}


def run_size(settings: Settings, env: dict, cfg, workers: int, images: int) -> dict:
    fleet = Fleet(settings, env, f"w{workers}", command=COMMAND)
    ensure_topic(settings)
    sampler = WaitSampler(settings)
    try:
        for i in range(workers):
            fleet.start(f"w{workers}-{i + 1}")
        fleet.wait_for(f"{workers} members", lambda: fleet.members() == workers, 600)
        pids = cpu.with_workers(cpu.service_pids(cfg), fleet.procs)
        before, machine = cpu.snapshot(pids), cpu.machine_jiffies()
        sampler.start()
        run([sys.executable, "-m", "producer", "--limit", str(images)], env)
        fleet.wait_rows(images, 1800)
        used = cpu.grouped(cpu.used(before, cpu.snapshot(pids)))
        busy, stolen = cpu.busy_fraction(machine, cpu.machine_jiffies())
        writes = write_seconds(fleet)
        _, error_rows = counts(settings)
    finally:
        sampler.stopped.set()
        if sampler.is_alive():
            sampler.join()
        fleet.stop()
    rows_s, _ = sent_to_written(settings)
    return {
        "workers": workers,
        "rows_s": round(rows_s, 1),  # from the first key sent to the last row written
        "ideal_rows_s": None,  # filled in by main: workers x 1000 / ms per image
        "cpu_ms_per_row": {k: round(1000 * v / images, 3) for k, v in used.items()},
        "write": writes,
        "machine_busy": round(busy, 2),
        "machine_stolen": round(stolen, 2),  # CPU time the hypervisor gave to others
        "postgres_active_backends": sampler.result(),
        "error_rows": error_rows,  # 0, or the run measured something else than classification
    }


def capacity(sizes: list[dict], cores: int, machine_img_s: float) -> dict:
    """Rows/s one core of each service serves at its highest measured CPU per row, and the
    machines of `machine_img_s` one server of this size (`cores`) carries."""
    out = {}
    for service in ("postgres", "s3", "kafka"):
        ms = max(s["cpu_ms_per_row"].get(service, 0.0) for s in sizes)
        per_core = 1000 / ms if ms else None
        out[service] = {
            "cpu_ms_per_row": ms,
            "rows_s_per_core": round(per_core) if per_core else None,
            f"machines_per_{cores}_core_server": math.floor(per_core * cores / machine_img_s) if per_core else None,
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.fleet_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--workers", type=worker_counts, default="4,8,16,24", help="fleet sizes, comma-separated")
    ap.add_argument("--partitions", type=int, default=48)
    ap.add_argument("--images", type=int, default=12000, help="keys sent per fleet size")
    ap.add_argument("--ms-per-image", type=float, default=20.0, help="the fixed answer's sleep per image")
    ap.add_argument("--machine-img-s", type=float, default=140.0, help="one machine's pipeline throughput")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    sizes = args.workers
    cores = os.cpu_count() or 1
    base = Settings()
    dev = dev_photos(base)
    results = []
    with temporary_stack() as cfg:
        settings = bench_settings("fleet", kafka_partitions=args.partitions)
        env = {
            **fleet_env(settings, {**os.environ}),
            "KAFKA_PARTITIONS": str(args.partitions),
            "FIXED_ANSWER_MS_PER_IMAGE": str(args.ms_per_image),
        }
        started = time.monotonic()
        upload_copies(settings, dev, args.images)
        print(f"uploaded in {time.monotonic() - started:.0f} s", file=sys.stderr)
        for workers in sizes:
            print(f"{workers} workers, {args.images} images...", file=sys.stderr)
            s, e = variant(settings, env, f"w{workers}")
            result = run_size(s, e, cfg, workers, args.images)
            result["ideal_rows_s"] = round(workers * 1000 / args.ms_per_image, 1)
            results.append(result)
            print(json.dumps(result), file=sys.stderr)
            truncate(settings)
    figures = {
        "machine": f"{cpu.model_name()}, {cores} cores",
        "partitions": args.partitions,
        "images_per_size": args.images,
        "ms_per_image": args.ms_per_image,
        "batch_size": settings.batch_size,
        "embeddings": settings.embeddings,
        "sizes": results,
        "machine_img_s": args.machine_img_s,
        "capacity": capacity(results, cores, args.machine_img_s),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "fleet_scale.json").write_text(json.dumps(figures, indent=2) + "\n")
    draw(args.out_dir / "fleet_scale.png", figures)
    print(json.dumps(figures, indent=2))
    return 0


def draw(path: Path, figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = figures["sizes"]
    w = [s["workers"] for s in sizes]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    ax1.plot(w, [s["rows_s"] for s in sizes], "o-", label="rows written/s")
    ax1.plot(w, [s["ideal_rows_s"] for s in sizes], "k--", label="workers × fixed answer rate")
    ax1.set_xlabel("workers")
    ax1.set_ylabel("rows/s")
    ax1.legend()
    for service in ("postgres", "s3", "kafka", "workers"):
        ax2.plot(w, [s["cpu_ms_per_row"].get(service, 0) for s in sizes], "o-", label=service)
    ax2.set_xlabel("workers")
    ax2.set_ylabel("CPU ms per row")
    ax2.legend()
    fig.suptitle(f"{figures['machine']}: {figures['partitions']} partitions, model replaced by a fixed answer")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
