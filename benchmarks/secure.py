"""What the locked-down stack costs: the pipeline's throughput and CPU per image on the stack of
`python -m infra.stack up --secure` (Kafka over SASL_SSL with SCRAM and ACLs, PostgreSQL and S3
over verified TLS) against the plaintext stack, one run each on this machine, one after the
other. Prints JSON and draws a PNG.

    python -m benchmarks.secure [--images 2000] [--warmup-images 1000] [--workers 2]

Each stack: the dev photos uploaded under distinct prefixes, a warm-up run (JVMs compile their
first thousands of requests: benchmarks/pipeline.py), then --images keys through the producer
and --workers `faust worker`s, from the first row to the last. On the secure stack the workers
run as the `worker` principal with a vs_worker login and the producer as `producer`, as in
production (docs/deploying/security.md). CPU: every process of each service and the workers,
while the keys are processed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import sys
import time
import uuid
from pathlib import Path

from benchmarks import cpu
from benchmarks.local_stack import temporary_stack
from benchmarks.pipeline import row_times, start_workers, truncate
from benchmarks.plot import throughput
from common.imaging import find_images
from common.kafka_admin import ensure_topic
from db.connection import connect
from db.roles import WORKER_ROLE, create_login
from infra import secure
from infra.fleet import Fleet, fleet_env, run
from settings import Settings
from upload import upload_dir

HERE = Path(__file__).resolve().parent


def _pipeline(cfg, settings: Settings, workers_env: dict, producer_env: dict, args, threads: int) -> dict:
    """One run of --images keys on its own topic and group; throughput and CPU ms per image."""
    tag = uuid.uuid4().hex[:6]
    topic, dead, group = f"bench-{tag}", f"bench-{tag}-dead", f"bench-{tag}"
    if cfg.secure:
        secure.grant(cfg, topic, dead, group)  # no one but admin may create a topic there
    s = settings.model_copy(update={"kafka_topic": topic, "kafka_dead_letter_topic": dead, "faust_app_id": group})
    if not cfg.secure:
        ensure_topic(s)
    names = {"KAFKA_TOPIC": topic, "KAFKA_DEAD_LETTER_TOPIC": dead, "FAUST_APP_ID": group}
    fleet = Fleet(s, fleet_env(s, {**workers_env, **names}), tag)
    try:
        start_workers(fleet, args.workers, threads)
        pids = cpu.with_workers(cpu.service_pids(cfg), fleet.procs)
        before = cpu.snapshot(pids)
        run([sys.executable, "-m", "producer", "--limit", str(args.images)], {**producer_env, **names})
        fleet.wait_rows(args.images, 1800)
        used = cpu.grouped(cpu.used(before, cpu.snapshot(pids)))
    finally:
        fleet.stop()
    times = [t for t, _ in row_times(s)]
    truncate(s)
    return {
        "img_s": round(throughput(times), 1),
        "cpu_ms_per_image": {k: round(1000 * v / args.images, 2) for k, v in used.items()},
        "cpu_ms_per_image_total": round(1000 * sum(used.values()) / args.images, 2),
    }


def measure(secure_stack: bool, args, threads: int) -> dict:
    dev = Settings().shared_dir / "images" / "dev"
    with temporary_stack(prefix="vs-bench-secure-" if secure_stack else "vs-bench-plain-", secure=secure_stack) as cfg:
        settings = Settings(_env_file=None, s3_bucket="bench")
        for i in range(math.ceil(max(args.images, args.warmup_images) / len(find_images(dev)))):
            upload_dir(settings, dev, prefix=f"copy{i}")
        workers_env = producer_env = {**os.environ, "S3_BUCKET": "bench"}
        if secure_stack:  # each with only its own rights
            password = secrets.token_urlsafe(12)
            conn = connect(settings)
            try:
                create_login(conn, "bench_worker", password, WORKER_ROLE)
            finally:
                conn.close()
            workers_env = {
                **workers_env,
                **cfg.env("worker"),
                "DATABASE_URL": cfg.database_url_as("bench_worker", password),
            }
            producer_env = {**producer_env, **cfg.env("producer")}
        if args.warmup_images:
            print(f"warm-up ({'secure' if secure_stack else 'plaintext'})...", file=sys.stderr)
            _pipeline(
                cfg,
                settings,
                workers_env,
                producer_env,
                argparse.Namespace(**{**vars(args), "images": args.warmup_images}),
                threads,
            )
        print(f"pipeline ({'secure' if secure_stack else 'plaintext'}): {args.images} images...", file=sys.stderr)
        return _pipeline(cfg, settings, workers_env, producer_env, args, threads)


def draw(path: Path, figures: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {"plaintext": figures["plaintext"], "secure": figures["secure"]}
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(list(runs), [r["img_s"] for r in runs.values()], color=["#888", "#2a6"])
    left.set_ylabel("images/s")
    left.set_title("pipeline throughput")
    parts = sorted({k for r in runs.values() for k in r["cpu_ms_per_image"]})
    bottom = [0.0, 0.0]
    for part in parts:
        values = [r["cpu_ms_per_image"].get(part, 0.0) for r in runs.values()]
        right.bar(list(runs), values, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, values)]
    right.set_ylabel("CPU ms per image")
    right.set_title("CPU per image, by process")
    right.legend(fontsize=8)
    fig.suptitle(f"locked-down stack vs plaintext, {figures['images']} images, {figures['machine']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.secure", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--warmup-images", type=int, default=1000, help="before each measured run (0: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.workers)
    saved = dict(os.environ)
    started = time.monotonic()
    results = {}
    for name, locked in (("plaintext", False), ("secure", True)):
        results[name] = measure(locked, args, threads)
        os.environ.clear()
        os.environ.update(saved)  # the next stack's settings, not this one's
    plain, locked = results["plaintext"], results["secure"]
    figures = {
        "machine": f"{cpu.model_name()}, {cores} cores ({platform.node()})",
        "images": args.images,
        "workers": args.workers,
        **results,
        "secure_over_plaintext_img_s": round(locked["img_s"] / plain["img_s"], 3),
        "secure_over_plaintext_cpu_per_image": round(
            locked["cpu_ms_per_image_total"] / plain["cpu_ms_per_image_total"], 3
        ),
        "seconds": round(time.monotonic() - started),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "secure.json").write_text(json.dumps(figures, indent=2) + "\n")
    draw(args.out_dir / "secure.png", figures)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
