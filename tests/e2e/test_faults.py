"""Fault injection on the real stack: workers killed with SIGKILL, the broker restarted,
PostgreSQL and S3 taken away mid-stream. Every key must end in exactly one row.

Figures of each run go to test-artifacts/reliability-*.json (README, RELIABILITY section).
VS_FAULT_KILLS (default 5) sets how many kills the kill test makes; 20 is the soak run.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid

import pytest

import upload
from db.connection import connect
from infra import services
from infra.fleet import ARTIFACTS, REPO, Fleet, counts, fleet_env

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CORPUS_BUCKET = "corpus"


def corpus(settings, dev_images, copies: int) -> list[str]:
    """copies x the 500 dev photos under distinct prefixes in one bucket, registered in
    image_info. Uploaded once per stack; later calls only list and register."""
    s = settings.model_copy(update={"s3_bucket": CORPUS_BUCKET})
    for i in range(copies):
        summary = upload.upload_dir(s, dev_images, CORPUS_BUCKET, prefix=f"copy{i}")
        assert summary.failed == 0
    return sorted(f"copy{i}/{p.name}" for i in range(copies) for p in dev_images.glob("*.JPEG"))


def check_exactly_once(settings, keys: list[str]) -> dict:
    """Every key has exactly one result row (none missing, none extra) and no error row.
    (A connection of its own: one opened before a PostgreSQL restart is dead.)"""
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT image_key, deliveries FROM prediction_results")
            rows = cur.fetchall()
            cur.execute("SELECT image_key, error_type, detail FROM prediction_errors")
            errors = cur.fetchall()
    finally:
        conn.close()
    got = [r[0] for r in rows]
    missing = set(keys) - set(got)
    assert not errors, f"unexpected error rows: {errors[:5]}"
    assert not missing, f"{len(missing)} keys missing, e.g. {sorted(missing)[:5]}"
    assert len(got) == len(set(got)) == len(keys), "duplicate or extra rows"
    return {"keys": len(keys), "rows": len(got), "missing": len(missing), "duplicates": len(got) - len(set(got)),
            "redelivered": sum(d - 1 for _, d in rows)}


def report(name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"reliability-{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"\nRELIABILITY {name}: {json.dumps(figures)}")


def start_stream(settings, env, tag: str, keys: list[str], seconds: float) -> tuple[Fleet, subprocess.Popen]:
    """Two workers, and a producer sending `keys` paced over `seconds` (`--rate`), so the faults
    land mid-stream however fast the machine classifies."""
    fleet = Fleet(settings, env, f"{tag}-{uuid.uuid4().hex[:6]}")
    fleet.start("worker-1")
    fleet.start("worker-2")
    fleet.wait_for("both workers in the consumer group", lambda: fleet.members() == 2, 180)
    # --stdin: the producer needs no PostgreSQL, so a database outage tests the workers alone
    key_file = ARTIFACTS / f"{fleet.tag}-keys.txt"
    key_file.write_text("".join(k + "\n" for k in keys))
    with open(key_file) as stdin:
        rate = f"{len(keys) / seconds:.1f}"
        producer = subprocess.Popen([sys.executable, "-m", "producer", "--stdin", "--rate", rate], env=env, cwd=REPO,
                                    stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return fleet, producer


def producer_succeeded(producer: subprocess.Popen) -> None:
    out, _ = producer.communicate(timeout=900)
    assert producer.returncode == 0 and "failed 0; undelivered 0" in out, out[-3000:]


def setup(settings, stack_env):
    s = settings.model_copy(update={"s3_bucket": CORPUS_BUCKET})
    return s, {**fleet_env(s, stack_env), "S3_BUCKET": CORPUS_BUCKET}


def test_workers_killed_with_sigkill_lose_nothing(settings, db_conn, dev_images, stack_env):
    kills_wanted = int(os.environ.get("VS_FAULT_KILLS", "5"))
    keys = corpus(settings, dev_images, copies=4)
    s, env = setup(settings, stack_env)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    fleet, producer = start_stream(s, env, "kill", keys, seconds=6.0 * kills_wanted)
    kills, started = [], time.monotonic()
    try:
        while len(kills) < kills_wanted:
            time.sleep(rng.uniform(1.5, 5.0))
            done = sum(counts(s))
            if done >= len(keys):
                break
            victim = rng.choice(sorted(fleet.procs))
            fleet.kill9(victim)
            kills.append({"t": round(time.monotonic() - started, 1), "worker": victim, "rows_before": done})
            fleet.start(victim)
        producer_succeeded(producer)
        fleet.wait_rows(len(keys), 900)
        time.sleep(3)
        assert all(fleet.alive().values()), "a worker died on its own"
    finally:
        producer.kill()
        fleet.stop()
    assert len(kills) >= kills_wanted, f"the stream ended after {len(kills)} kills (seed {seed})"
    figures = check_exactly_once(s, keys)
    report("kill9", {**figures, "kills": len(kills), "seed": seed, "kill_log": kills,
                     "seconds": round(time.monotonic() - started, 1)})


def _outage(settings, db_conn, dev_images, stack_env, stack, name, stop, start, pause_s, copies=2):
    keys = corpus(settings, dev_images, copies=copies)
    s, env = setup(settings, stack_env)
    fleet, producer = start_stream(s, env, name, keys, seconds=pause_s + 30)
    try:
        fleet.wait_for("the first 150 rows", lambda: sum(counts(s)) >= 150, 300)
        stop(stack)
        down_at = time.monotonic()
        while time.monotonic() - down_at < pause_s:
            assert all(fleet.alive().values()), f"a worker died while {name} was down"
            time.sleep(1)
        start(stack)
        rows_at_restart = sum(counts(s))
        producer_succeeded(producer)
        fleet.wait_rows(len(keys), 600)
        time.sleep(3)
        assert all(fleet.alive().values()), "a worker died"
    finally:
        producer.kill()
        fleet.stop()
    figures = check_exactly_once(s, keys)
    assert rows_at_restart < len(keys), "the outage came too late to test anything"
    report(name, {**figures, "outage_s": pause_s, "rows_when_service_returned": rows_at_restart})


def test_kafka_broker_restart_mid_stream(settings, db_conn, dev_images, stack_env, stack):
    _outage(settings, db_conn, dev_images, stack_env, stack, "kafka-restart",
            services.stop_kafka, services.start_kafka, pause_s=5)


def test_postgres_down_for_30s_mid_stream(settings, db_conn, dev_images, stack_env, stack):
    _outage(settings, db_conn, dev_images, stack_env, stack, "postgres-down",
            services.stop_postgres, services.start_postgres, pause_s=30)


def test_s3_unreachable_for_10s_mid_stream(settings, db_conn, dev_images, stack_env, stack):
    _outage(settings, db_conn, dev_images, stack_env, stack, "s3-down",
            services.stop_s3, services.start_s3, pause_s=10)
