"""How long `training fit --labels` takes for 10,000 labelled keys from the stored embeddings
against today's path (download each photo from S3, decode it, run it and its mirror through the
network, train the head), and what each path's version is worth.

On the local stack (DATABASE_URL, S3_ENDPOINT_URL: `python -m infra.stack up`): the dev photos
that coarse.csv labels (240) are put into a bucket of their own under --keys keys (each photo
under many keys), classified and embedded as a worker stores them (consumer/embedding.py,
db/queries.write_batch); then `python -m training fit --labels` runs on them as a user runs
it: from the embeddings on --keys keys, then on the first --photo-keys both from the embeddings
and with --from-images (the photos' path cannot take 10,000 on this machine: it holds every
decoded photo in memory). Wall time of each command, from start to
registered, and its peak resident memory. Top-1 is measured apart, on the 240 distinct photos (one key each, split seeds
0..--seeds-1): with copies of one photo on both sides of a split, the 10,000 keys' validation
would flatter both. Prints JSON; --out writes it.

    python -m benchmarks.train_from_embeddings --keys 10000 --photo-keys 5000 \
        --out benchmarks/results/train_from_embeddings.json
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.cpu import model_name as cpu_model
from benchmarks.report import emit
from settings import Settings

REPO = Path(__file__).resolve().parent.parent


def coarse_photos(shared: Path) -> list[tuple[Path, str]]:
    """(dev photo, its coarse category) for every dev photo coarse.csv labels."""
    coarse = {r["class_index"]: r["coarse"] for r in csv.DictReader((shared / "images" / "coarse.csv").open())}
    dev = shared / "images" / "dev"
    return [
        (dev / r["filename"], coarse[r["class_index"]])
        for r in csv.DictReader((dev / "labels.csv").open())
        if r["class_index"] in coarse
    ]


def store(settings: Settings, photos: list[tuple[Path, str]], keys: int, bucket: str) -> list[tuple[str, str]]:
    """Put `keys` objects (the photos, round robin) into `bucket`, and their rows and embeddings
    into the database as a worker writes them; returns (key, category) in order."""
    from consumer.embedding import Embedder
    from db.connection import connect
    from db.embeddings import Embedding
    from db.queries import Prediction, write_batch
    from upload import ensure_bucket

    s3 = settings.s3_client()
    ensure_bucket(s3, bucket)
    embedder = Embedder(settings)
    data = [p.read_bytes() for p, _ in photos]
    vectors = embedder.embed(data)
    n = len(photos)
    labelled = [(f"bench/{i // n:03d}/{photos[i % n][0].name}", i % n) for i in range(keys)]
    with ThreadPoolExecutor(settings.s3_max_concurrency) as pool:
        list(pool.map(lambda kp: s3.put_object(Bucket=bucket, Key=kp[0], Body=data[kp[1]]), labelled))
    conn = connect(settings)
    try:
        for start in range(0, keys, 1000):
            part = labelled[start : start + 1000]
            preds = [Prediction(k, "squeezenet1_1", "x", 0.5, 0, [], "bench") for k, _ in part]
            write_batch(conn, preds, vectors=[Embedding(k, embedder.key, vectors[p]) for k, p in part])
    finally:
        conn.close()
    return [(k, photos[p][1]) for k, p in labelled]


def fit(env: dict, labels: Path, *extra: str) -> tuple[float, float, float]:
    """(wall seconds, validation top-1, peak resident GB) of one `training fit --labels` run."""
    name = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "training", "fit", "--labels", str(labels), "--name", name, *extra],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=err,
        )
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory, not all children's
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"training fit failed: {stderr[-2000:]}")
    found = re.search(r"top-1 ([0-9.]+)%", stdout)
    return seconds, float(found.group(1)) / 100 if found else float("nan"), usage.ru_maxrss / 2**20


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_key", "category"])
        writer.writerows(rows)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.train_from_embeddings",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--keys", type=int, default=10_000, help="labelled keys trained from their embeddings")
    ap.add_argument("--photo-keys", type=int, default=5_000, help="keys for the comparison with the photos' path")
    ap.add_argument("--seeds", type=int, default=3, help="split seeds for the top-1 on distinct photos")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    bucket = f"bench-train-{uuid.uuid4().hex[:6]}"
    settings = Settings(s3_bucket=bucket)
    env = {**os.environ, "S3_BUCKET": bucket}
    photos = coarse_photos(settings.shared_dir)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / bucket
    work.mkdir(parents=True, exist_ok=True)
    print(f"storing {args.keys} keys...", file=sys.stderr)
    rows = store(settings, photos, args.keys, bucket)
    big = write_csv(work / "labels.csv", rows)
    print("fit from the embeddings...", file=sys.stderr)
    emb_s, _, emb_gb = fit(env, big)
    # today's path holds every decoded photo and its features in memory: 10,000 dev photos were
    # killed for want of memory at 22.4 GB on a 24 GB machine (benchmarks/HISTORY.md)
    few = write_csv(work / "photo-keys.csv", rows[: args.photo_keys])
    print(f"fit from the embeddings and from the photos, {args.photo_keys} keys...", file=sys.stderr)
    few_emb_s, _, few_emb_gb = fit(env, few)
    img_s, _, img_gb = fit(env, few, "--from-images")
    distinct = write_csv(work / "distinct.csv", rows[: len(photos)])  # each photo once
    top1 = {"embeddings": [], "photos": []}
    for seed in range(args.seeds):
        print(f"top-1 on distinct photos, seed {seed}...", file=sys.stderr)
        top1["embeddings"].append(fit(env, distinct, "--seed", str(seed))[1])
        top1["photos"].append(fit(env, distinct, "--seed", str(seed), "--from-images")[1])
    emit(
        {
            "benchmark": "train_from_embeddings",
            "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
            "keys": args.keys,
            "photo_keys": args.photo_keys,
            "distinct_photos": len(photos),
            "embeddings": {"keys": args.keys, "fit_seconds": round(emb_s, 1), "peak_resident_gb": round(emb_gb, 2)},
            "at_photo_keys": {
                "fit_seconds": {"embeddings": round(few_emb_s, 1), "photos": round(img_s, 1)},
                "peak_resident_gb": {"embeddings": round(few_emb_gb, 2), "photos": round(img_gb, 2)},
                "embeddings_over_photos": round(few_emb_s / img_s, 3),
            },
            "top1_distinct_photos": {
                path: {"runs": [round(v, 3) for v in values], "mean": round(statistics.mean(values), 3)}
                for path, values in top1.items()
                if values
            },
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
