"""Training from the browser and the Models page's admin actions, on the real PostgreSQL:
a job runs outside the request, one per name, ends with its version or its reason, and is never
left "running" by a viewer that stopped; shadow, promote and roll back follow the registry's
rules and are recorded."""

from __future__ import annotations

import sys
import time
import uuid

import pytest

from db import registry
from tests.viewer.logins import logged_in, register_versions
from viewer.app import Database
from viewer.jobs import TrainingJobs


def script(*lines: str, status: int = 0, sleep: float = 0.0) -> list[str]:
    body = f"import sys, time\ntime.sleep({sleep})\n" + "".join(f"print({line!r}, flush=True)\n" for line in lines)
    return [sys.executable, "-c", body + f"sys.exit({status})"]


def wait_for(jobs: TrainingJobs, name: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (job,) = jobs.recent(name)[:1]
        if job["state"] != "running":
            return job
        time.sleep(0.2)
    raise AssertionError(f"{name}'s job still running")


def test_a_job_records_the_version_it_registered_or_the_line_that_says_why_not(site):
    settings, _, _ = site
    db = Database(settings.database_url, read_only=False)
    name = f"job-{uuid.uuid4().hex[:6]}"
    ok = TrainingJobs(db.connection, lambda n: script("epoch 1", f"registered {n}@3 (candidate) at s3://m/", "try it"))
    ok.start(name, "ann")
    done = wait_for(ok, name)
    assert done["state"] == "succeeded" and done["version"] == 3 and done["started_by"] == "ann"
    bad = TrainingJobs(db.connection, lambda n: script("decoding", "error: no labels for x", "", status=1))
    bad.start(name, "ann")
    failed = wait_for(bad, name)
    assert failed["state"] == "failed" and failed["message"] == "error: no labels for x" and failed["version"] is None


def test_one_job_per_name_and_a_job_whose_viewer_stopped_is_lost(site):
    settings, conn, _ = site
    db = Database(settings.database_url, read_only=False)
    name = f"job-{uuid.uuid4().hex[:6]}"
    slow = TrainingJobs(db.connection, lambda n: script("working", sleep=3))
    slow.start(name, "ann")
    from db.training_jobs import AlreadyRunning

    with pytest.raises(AlreadyRunning):
        slow.start(name, "bob")
    wait_for(slow, name)
    with conn, conn.cursor() as cur:  # a viewer that died mid-job: its heartbeat stopped long ago
        cur.execute(
            "INSERT INTO training_jobs (model_name, started_by, heartbeat, message) VALUES (%s, 'ann', "
            "now() - interval '10 minutes', 'epoch 12')",
            (name,),
        )
    (lost,) = slow.recent(name)[:1]
    assert lost["state"] == "lost" and lost["message"] == "epoch 12"  # as read: nothing written by a GET
    slow.start(name, "bob")  # the name is free again, and the lost job is recorded as such
    assert wait_for(slow, name)["state"] == "failed"  # the script registers nothing
    recorded = [j for j in slow.recent(name) if j["id"] == lost["id"]][0]
    assert recorded["state"] == "lost" and recorded["message"] == "the viewer that ran it stopped (epoch 12)"


def test_train_runs_the_real_fit_in_the_background_and_only_for_admins(site):
    _, conn, app = site
    admin = logged_in(app, conn, "admin")
    name = f"proj-{uuid.uuid4().hex[:6]}"
    assert admin.post("/api/label/projects", json={"model": name, "categories": ["a", "b"]}).status_code == 201
    labeller = logged_in(app, conn, "labeller")
    assert labeller.post(f"/api/label/{name}/train").status_code == 403
    assert admin.post("/api/label/no-such-project/train").status_code == 400
    started = admin.post(f"/api/label/{name}/train")
    assert started.status_code == 202
    deadline = time.monotonic() + 120
    while (job := labeller.get("/api/jobs", query_string={"model": name}).get_json()["items"][0])["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert job["state"] == "failed" and job["message"].startswith(f"error: no labels for {name}")
    actions = admin.get("/api/users").get_json()["actions"]
    assert any(a["action"] == "train" and a["target"] == name for a in actions)


def test_shadow_promote_and_roll_back_follow_the_registrys_rules_and_are_recorded(site):
    _, conn, app = site
    name = f"stage-{uuid.uuid4().hex[:6]}"
    register_versions(conn, name, ["a", "b"])
    registry.set_stage(conn, name, 1, "production")
    admin = logged_in(app, conn, "admin")

    def stage(version, to):
        return admin.post(f"/api/models/{name}/{version}/stage", json={"stage": to})

    assert stage(2, "shadow").get_json()["stage"] == "shadow"
    assert stage(2, "production").get_json()["stage"] == "production"
    assert stage(1, "production").get_json()["stage"] == "production"  # the roll back
    refused = stage(1, "candidate")
    assert refused.status_code == 409 and "is the production version" in refused.get_json()["error"]
    assert stage(9, "shadow").status_code == 409 and stage(1, "retired").status_code == 400
    assert (
        logged_in(app, conn, "labeller").post(f"/api/models/{name}/2/stage", json={"stage": "shadow"}).status_code
        == 403
    )
    production, _ = registry.serving(conn, name)
    assert production.version == 1
    actions = [(a["action"], a["target"], a["detail"]) for a in admin.get("/api/users").get_json()["actions"]]
    assert ("promote", f"{name}@1", {"previous_production": f"{name}@2"}) in actions and (
        "shadow",
        f"{name}@2",
        {},
    ) in actions
