"""The whole pipeline on the real local stack: upload.py -> producer -> two `faust worker`
processes -> PostgreSQL, with the 500 labelled dev photos and the real weights."""

from __future__ import annotations

import csv
import json
import sys
import time

from infra.fleet import counts, fleet_env, run


def test_500_dev_photos_through_two_workers(e2e, stack_settings, db_conn, dev_images, stack_env):
    env = fleet_env(stack_settings, stack_env)
    out = run([sys.executable, "upload.py", str(dev_images)], env).stdout
    assert "uploaded 500, skipped 0, failed 0; 500 new keys registered" in out

    fleet = e2e.fleet(stack_settings, env, "e2e", workers=2)
    assert "sent 500 of 500 keys" in run([sys.executable, "-m", "producer"], env).stdout
    fleet.wait_rows(500, 600)
    time.sleep(3)  # anything still in flight would show up as a 501st row
    assert all(fleet.alive().values()), "a worker died"
    per_worker = {w: fleet.metric(w, "vs_images_classified_total") for w in ("worker-1", "worker-2")}
    assert sum(per_worker.values()) >= 500 and all(v > 0 for v in per_worker.values()), per_worker
    assert fleet.metric("worker-1", "vs_stage_seconds_count") > 0
    assert fleet.metric("worker-1", "vs_images_in_flight") == 0

    def status() -> dict:
        return json.loads(run([sys.executable, "-m", "consumer.status", "--json"], env).stdout)

    fleet.wait_for("offsets committed (lag 0)", lambda: status()["kafka"]["total_lag"] == 0, 60)
    st = status()
    assert st["kafka"]["group_state"] == "STABLE" and len(st["kafka"]["members"]) == 2
    assert sum(p["end"] for p in st["kafka"]["partitions"]) == 500
    assert st["database"]["results_total"] == 500 and st["database"]["keys_without_row"] == 0
    assert {h["hostname"] for h in st["database"]["hosts"]} == {"worker-1", "worker-2"}
    text = run([sys.executable, "-m", "consumer.status"], env).stdout
    assert "total lag 0" in text and "500 classified, 0 errors, 0 of 500 registered keys without a row" in text
    e2e.stop()

    assert counts(stack_settings) == (500, 0)
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT image_key, category, hostname, time FROM prediction_results")
        rows = cur.fetchall()
    assert len({r[0] for r in rows}) == 500
    assert all(r[2] and r[3] is not None for r in rows)
    assert {r[2] for r in rows} == {"worker-1", "worker-2"}, "both workers must have classified images"

    label_rows = csv.DictReader((dev_images / "labels.csv").read_text().splitlines())
    labels = {r["filename"]: r["class_name"] for r in label_rows}
    assert {r[0] for r in rows} == set(labels)
    accuracy = sum(labels[key] == category for key, category, _, _ in rows) / len(rows)
    assert accuracy >= 0.65, f"top-1 accuracy {accuracy:.3f}"
