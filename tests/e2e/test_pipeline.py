"""The whole pipeline on the real local stack: upload.py -> producer -> two `faust worker`
processes -> PostgreSQL, with the 500 labelled dev photos and the real weights."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from db.connection import connect
from settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = Path(os.environ.get("VS_TEST_ARTIFACTS", REPO / "test-artifacts"))


def run(cmd: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, **kw)
    assert res.returncode == 0, f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
    return res


def start_worker(name: str, env: dict, log: Path) -> subprocess.Popen:
    env = {**env, "HOSTNAME": name, "TORCH_THREADS": "1", "DECODE_WORKERS": "1"}
    return subprocess.Popen([str(BIN / "faust"), "-A", "consumer.app", "worker", "-l", "info"],
                            env=env, cwd=REPO, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def group_members(settings: Settings, group: str) -> int:
    admin = AdminClient(settings.kafka_client_config())
    try:
        desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except Exception:  # noqa: BLE001 - the group does not exist yet
        return 0
    return len(desc.members) if str(desc.state).endswith("STABLE") else 0


def wait_for(what: str, check, timeout: float, logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    tails = "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-40:])
                      for p in logs)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


def counts(settings: Settings) -> tuple[int, int]:
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM prediction_results), (SELECT count(*) FROM prediction_errors)")
            return cur.fetchone()
    finally:
        conn.close()


def test_500_dev_photos_through_two_workers(settings, db_conn, dev_images, stack_env):
    env = {**stack_env, "KAFKA_TOPIC": settings.kafka_topic, "S3_BUCKET": settings.s3_bucket,
           "FAUST_APP_ID": settings.faust_app_id, "MODEL_WEIGHTS": str(settings.model_weights)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex[:6]
    logs = [ARTIFACTS / f"e2e-worker-{i}-{run_id}.log" for i in (1, 2)]

    out = run([sys.executable, "upload.py", str(dev_images)], env).stdout
    assert "uploaded 500, skipped 0, failed 0; 500 new keys registered" in out

    workers = [start_worker(f"worker-{i}", env, log) for i, log in zip((1, 2), logs)]
    try:
        wait_for("both workers in the consumer group", lambda: group_members(settings, settings.faust_app_id) == 2,
                 180, logs)
        out = run([sys.executable, "-m", "producer"], env).stdout
        assert "sent 500 of 500 keys" in out
        wait_for("500 rows", lambda: sum(counts(settings)) >= 500, 600, logs)
        time.sleep(3)  # anything still in flight would show up as a 501st row
        assert all(w.poll() is None for w in workers), "a worker died"
    finally:
        for w in workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)

    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT image_key, category, hostname, time FROM prediction_results")
        rows = cur.fetchall()
        cur.execute("SELECT count(*) FROM prediction_errors")
        (n_errors,) = cur.fetchone()
    assert n_errors == 0
    assert len(rows) == 500
    assert len({r[0] for r in rows}) == 500
    assert all(r[2] and r[3] is not None for r in rows)
    assert {r[2] for r in rows} == {"worker-1", "worker-2"}, "both workers must have classified images"

    labels = {r["filename"]: r["class_name"] for r in csv.DictReader(open(dev_images / "labels.csv"))}
    assert {r[0] for r in rows} == set(labels)
    accuracy = sum(labels[key] == category for key, category, _, _ in rows) / len(rows)
    assert accuracy >= 0.65, f"top-1 accuracy {accuracy:.3f}"
