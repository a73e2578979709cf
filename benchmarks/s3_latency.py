"""Does download concurrency hide the latency of a distant S3? The same images through the
pipeline with S3 reached directly, through Toxiproxy (infra/toxiproxy.py) adding nothing, and
adding 50 ms to every answer, with S3_MAX_CONCURRENCY at its default, at BATCH_SIZE and at 1. On a local
stack of its own; prints a table and writes JSON to benchmarks/results/.

    python -m benchmarks.s3_latency [--images 400] [--latency-ms 50]

Throughput is measured from the first to the last row written, as in benchmarks/pipeline.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.local_stack import temporary_stack
from benchmarks.pipeline import row_times, run_fleet, throughput, truncate, variant
from infra.fleet import fleet_env
from infra.toxiproxy import Toxiproxy
from settings import Settings
from upload import upload_dir

HERE = Path(__file__).resolve().parent


def measure(images: int, latency_ms: int, workers: int, warmup: int) -> dict:
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)
    runs: list[dict] = []
    with temporary_stack("vs-bench-s3lat-") as cfg:
        tag = uuid.uuid4().hex[:6]
        settings = Settings(kafka_topic=f"s3lat-{tag}", faust_app_id=f"s3lat-{tag}", s3_bucket="bench")
        dev = settings.shared_dir / "images" / "dev"
        if not dev.is_dir():
            sys.exit(f"no photos at {dev}: set SHARED_DIR")
        for i in range(math.ceil(max(images, warmup) / 500)):
            upload_dir(settings, dev, prefix=f"copy{i}")
        env = fleet_env(settings, {**os.environ})
        default_conc = settings.s3_max_concurrency
        with Toxiproxy.start() as tp:
            proxied = f"http://{tp.proxy('s3', upstream=f'{cfg.host}:{cfg.s3_port}')}"
            if warmup:  # a fresh s3proxy JVM is slow for its first thousands of requests
                run_fleet(*variant(settings, env, "warmup"), "warmup", workers, threads, warmup)
                truncate(settings)
            plan = [
                ("direct", None, 0, default_conc),
                ("proxy", proxied, 0, default_conc),
                (f"+{latency_ms} ms", proxied, latency_ms, default_conc),
                (f"+{latency_ms} ms", proxied, latency_ms, 1),
            ]
            if settings.batch_size > default_conc:  # one round trip per batch instead of several
                plan.insert(3, (f"+{latency_ms} ms", proxied, latency_ms, settings.batch_size))
            for i, (label, endpoint, ms, conc) in enumerate(plan):
                tp.clear("s3")
                if ms:
                    tp.latency("s3", ms)
                s, e = variant(settings, env, f"run{i}")
                e = {**e, "S3_MAX_CONCURRENCY": str(conc), **({"S3_ENDPOINT_URL": endpoint} if endpoint else {})}
                print(f"{label}, S3_MAX_CONCURRENCY={conc}: {images} images...", file=sys.stderr)
                run_fleet(s, e, f"run{i}", workers, threads, images)
                img_s = throughput([t for t, _ in row_times(settings)])
                runs.append({"s3": label, "added_latency_ms": ms, "s3_max_concurrency": conc, "img_s": round(img_s, 1)})
                truncate(settings)
    direct = runs[0]["img_s"]
    for r in runs:
        r["ratio_to_direct"] = round(r["img_s"] / direct, 2) if direct else None
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} cores ({platform.node()})",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "images": images,
        "workers": workers,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.s3_latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--images", type=int, default=400, help="images per run")
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--warmup-images", type=int, default=500)
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    started = time.monotonic()
    out = measure(args.images, args.latency_ms, args.workers, args.warmup_images)
    print(f"\n{out['images']} images per run, {out['workers']} worker(s), {out['machine']}")
    print(f"{'S3':<12}{'S3_MAX_CONCURRENCY':>20}{'img/s':>10}{'vs direct':>11}")
    for r in out["runs"]:
        print(f"{r['s3']:<12}{r['s3_max_concurrency']:>20}{r['img_s']:>10.1f}{r['ratio_to_direct']:>11.2f}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "s3_latency.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"written to {path} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
