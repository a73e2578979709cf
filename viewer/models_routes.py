"""The Models page's admin actions and what they are judged by:

- `POST /api/models/NAME/N/stage` (admin) `{"stage": "shadow"|"production"|"candidate"}`:
  shadow a candidate, promote (rolling back is promoting the previous version again), or
  stop shadowing; the registry's own rules (db/registry.set_stage), recorded in admin_actions;
- `POST /api/label/NAME/train` (admin): `python -m training fit --from-labels NAME` as a
  background job (viewer/jobs.py); `GET /api/jobs?model=NAME`: the recent jobs;
- `GET /api/models/NAME/labelled`: production's and the shadow's accuracy on the labelled images.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, g, jsonify, request

from db import accounts, labels, registry
from db.registry import RegistryError
from db.training_jobs import AlreadyRunning
from viewer.auth import requires
from viewer.jobs import JobNotStarted, TrainingJobs
from viewer.labelling import LabelError, check_project_name

STAGES = ("shadow", "production", "candidate")


def register(app: Flask, connection: Callable, jobs: TrainingJobs) -> None:
    @app.errorhandler(RegistryError)
    def registry_refused(exc: RegistryError):
        return jsonify(error=str(exc)), 409

    @app.errorhandler(JobNotStarted)
    def not_started(exc: JobNotStarted):
        return jsonify(error=str(exc)), 503

    @app.errorhandler(AlreadyRunning)
    def running(exc: AlreadyRunning):
        return jsonify(error=f"a training of {exc} is running already: wait for it to end"), 409

    @app.post("/api/models/<name>/<int:version>/stage")
    @requires("admin")
    def api_set_stage(name: str, version: int):
        data = request.get_json(silent=True)
        stage = data.get("stage") if isinstance(data, dict) else None
        if stage not in STAGES:
            raise LabelError(f"stage must be one of {', '.join(STAGES)}")
        name = check_project_name(name)
        with connection() as conn:
            before, _ = registry.serving(conn, name)
        with connection(transaction=False) as conn:  # set_stage commits its own transaction
            mv = registry.set_stage(conn, name, version, stage)
        with connection() as conn:
            what = "promote" if stage == "production" else stage
            detail = {"previous_production": before.ref} if stage == "production" and before else {}
            accounts.record_action(conn, g.user.name, what, mv.ref, **detail)
        return jsonify(model=name, version=version, stage=mv.stage)

    @app.get("/api/models/<name>/labelled")
    def api_labelled(name: str):
        name = check_project_name(name)
        with connection() as conn:
            production, shadow = registry.serving(conn, name)
            versions = {r: mv.version for r, mv in (("production", production), ("shadow", shadow)) if mv}
            return jsonify(model=name, **labels.accuracy_on_labels(conn, name, versions))

    @app.post("/api/label/<name>/train")
    @requires("admin")
    def api_train(name: str):
        name = check_project_name(name)
        with connection() as conn:
            if labels.project_categories(conn, name) is None:
                raise LabelError(f"no labelling project {name}")
        job = jobs.start(name, g.user.name)
        with connection() as conn:
            accounts.record_action(conn, g.user.name, "train", name, job=job)
        return jsonify(job=job), 202

    @app.get("/api/jobs")
    @requires("labeller")
    def api_jobs():
        model = request.args.get("model") or None
        return jsonify(items=jobs.recent(check_project_name(model) if model else None))
