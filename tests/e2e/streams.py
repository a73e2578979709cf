"""What the end-to-end tests share: a corpus of real photos in S3, a stream of their keys
paced through the real producer into real `faust worker` processes, and the exactly-once
check with the figures each run reports (test-artifacts/reliability-*.json). The processes
themselves come from the `e2e` fixture (conftest.py), which stops them after each test."""

from __future__ import annotations

import json
import subprocess

import upload
from db.connection import connect
from infra.fleet import ARTIFACTS, fleet_env

CORPUS_BUCKET = "corpus"


def corpus(settings, dev_images, copies: int) -> list[str]:
    """copies x the 500 dev photos under distinct prefixes in one bucket, registered in
    image_info. Uploaded once per stack; later calls only list and register."""
    s = settings.model_copy(update={"s3_bucket": CORPUS_BUCKET})
    for i in range(copies):
        summary = upload.upload_dir(s, dev_images, prefix=f"copy{i}")
        assert summary.failed == 0
    return sorted(f"copy{i}/{p.name}" for i in range(copies) for p in dev_images.glob("*.JPEG"))


def check_exactly_once(settings, keys: list[str], model: str = "") -> dict:
    """Every key has exactly one result row of `model` (default: settings.model_name; none
    missing, none extra), its embedding, and no error row. (A connection of its own: one opened before a
    PostgreSQL restart is dead.)"""
    model = model or settings.model_name
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT image_key, deliveries FROM prediction_results WHERE model = %s", (model,))
            rows = cur.fetchall()
            cur.execute("SELECT image_key, error_type, detail FROM prediction_errors WHERE model = %s", (model,))
            errors = cur.fetchall()
            cur.execute(  # the worker writes an image's embedding in its rows' transaction
                """SELECT r.image_key FROM prediction_results r
                   WHERE r.model = %s AND r.deleted_at IS NULL AND NOT EXISTS (
                       SELECT 1 FROM image_embeddings e WHERE e.image_key = r.image_key AND e.deleted_at IS NULL)""",
                (model,),
            )
            unembedded = [r[0] for r in cur.fetchall()]
    finally:
        conn.close()
    got = [r[0] for r in rows]
    missing = set(keys) - set(got)
    assert not errors, f"unexpected error rows: {errors[:5]}"
    assert not missing, f"{len(missing)} keys missing, e.g. {sorted(missing)[:5]}"
    assert len(got) == len(set(got)) == len(keys), "duplicate or extra rows"
    assert not unembedded, f"{len(unembedded)} rows without an embedding, e.g. {unembedded[:5]}"
    return {
        "keys": len(keys),
        "rows": len(got),
        "missing": len(missing),
        "duplicates": len(got) - len(set(got)),
        "redelivered": sum(d - 1 for _, d in rows),
    }


def report(name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"reliability-{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nRELIABILITY {name}: {json.dumps(figures)}")


def producer_succeeded(producer: subprocess.Popen) -> None:
    out, _ = producer.communicate(timeout=900)
    assert producer.returncode == 0 and "failed 0; undelivered 0" in out, out[-3000:]


def setup(settings, stack_env):
    s = settings.model_copy(update={"s3_bucket": CORPUS_BUCKET})
    return s, {**fleet_env(s, stack_env), "S3_BUCKET": CORPUS_BUCKET}
