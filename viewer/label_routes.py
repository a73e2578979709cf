"""Labelling in the browser: projects, queues, labels, progress and export.

- `GET /label`: the projects (labellers), and a form to start one (admins);
- `GET /label/NAME`: the keyboard-first labelling page (1-9 a category, Enter the suggestion,
  x skip, z undo; a grid mode labels many at once);
- `POST /api/label/projects` (admin) `{"model", "categories"}`, or `{"model", "from_model": true}`
  for the categories of NAME's production version;
- `GET /api/label/NAME`: its categories, the model its queues read, progress, and the accuracy
  estimate of that model from the random queue's labels;
- `POST /api/label/NAME/queue?kind=margin|random|disagreement|mislabel&n=10`: images leased
  to you (db/label_queues.py);
- `POST /api/label/NAME` `{"keys", "category", "how", "queue"}`: labels, answered with each
  key's label before (what undo puts back);
- `GET /api/label/NAME/history?key=K`, `GET /api/label/NAME/labels.csv` (`image_key,category`);
- `GET /api/label/NAME/recent` (admin): the newest labels, who gave each, when and how.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from flask import Flask, Response, abort, g, jsonify, render_template, request

from db import accounts, label_queues, registry
from db import labels as store
from settings import Settings
from viewer.auth import requires
from viewer.labelling import (
    LEASE_S,
    LabelError,
    check_categories,
    check_label,
    check_project_name,
    wilson,
)


def register(app: Flask, settings: Settings, connection: Callable, page: dict, number: Callable) -> None:
    @app.errorhandler(LabelError)
    def refused(exc: LabelError):
        return jsonify(error=str(exc)), 400

    def project(conn, name: str) -> list[str]:
        categories = store.project_categories(conn, check_project_name(name))
        if categories is None:
            abort(404)
        return categories

    def source(conn, name: str) -> str:
        return name if label_queues.has_rows(conn, name) else settings.model_name

    @app.get("/label")
    @requires("labeller")
    def label_projects_page():
        return render_template("label_projects.html", nav="label", **page)

    @app.get("/api/label/projects")
    @requires("labeller")
    def api_label_projects():
        with connection() as conn:
            return jsonify(items=store.projects(conn))

    @app.post("/api/label/projects")
    @requires("admin")
    def api_create_project():
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise LabelError("send a JSON object")
        name = check_project_name(data.get("model"))
        with connection() as conn:
            if data.get("from_model"):
                production, _ = registry.serving(conn, name)
                if production is None:
                    raise LabelError(f"{name} has no production version to take the categories from")
                categories = check_categories(list(production.categories))
            else:
                categories = check_categories(data.get("categories"))
            if not store.create_project(conn, name, categories, g.user.name):
                raise LabelError(f"a project for {name} exists already")
            accounts.record_action(conn, g.user.name, "create labelling project", name, categories=categories)
        return jsonify(model=name, categories=categories), 201

    @app.get("/label/<name>")
    @requires("labeller")
    def label_page(name: str):
        with connection() as conn:
            project(conn, name)
        return render_template("label.html", nav="label", project=name, **page)

    @app.get("/api/label/<name>")
    @requires("labeller")
    def api_project(name: str):
        with connection() as conn:
            categories = project(conn, name)
            reads = source(conn, name)
            n, agree = store.random_sample_agreement(conn, name) if reads == name else (0, 0)
            progress = store.progress(conn, name)
        interval = wilson(agree, n)
        return jsonify(
            model=name,
            categories=categories,
            source=reads,
            progress=progress,
            estimate={"images": n, "agree": agree, "accuracy": agree / n if n else None, "interval95": interval},
        )

    @app.post("/api/label/<name>/queue")  # a POST: it leases images to the caller
    @requires("labeller")
    def api_queue(name: str):
        kind = request.args.get("kind", "margin")
        if kind not in label_queues.QUEUES:
            raise LabelError(f"kind must be one of {', '.join(label_queues.QUEUES)}")
        n = number("n", int, 10, 1, 100)
        with connection() as conn:
            categories = set(project(conn, name))
            items = label_queues.claim(conn, name, source(conn, name), kind, g.user.name, n, LEASE_S)
        for item in items:
            item["suggestion"] = item["category"] if item["category"] in categories else None
        return jsonify(kind=kind, lease_s=LEASE_S, items=items)

    @app.post("/api/label/<name>")
    @requires("labeller")
    def api_label(name: str):
        with connection() as conn:
            keys, category, how, queue = check_label(request.get_json(silent=True), project(conn, name))
            missing = store.unknown(conn, keys)
            if missing:
                raise LabelError(f"{len(missing)} key(s) are no registered image, e.g. {missing[0][:200]!r}")
            before = store.add(conn, name, keys, category, g.user.name, how, queue)
        return jsonify(labelled=len(keys), previous=before)

    @app.get("/api/label/<name>/history")
    @requires("labeller")
    def api_history(name: str):
        with connection() as conn:
            project(conn, name)
            return jsonify(
                key=request.args.get("key", ""), items=store.history(conn, name, request.args.get("key", ""))
            )

    @app.get("/api/label/<name>/recent")
    @requires("admin")
    def api_recent(name: str):
        with connection() as conn:
            project(conn, name)
            return jsonify(items=store.recent(conn, name, number("limit", int, 100, 1, 1000)))

    @app.get("/api/label/<name>/labels.csv")
    @requires("labeller")
    def api_export(name: str):
        with connection() as conn:
            project(conn, name)
            rows = store.labelled_rows(conn, name)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["image_key", "category"])
        writer.writerows(rows)
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}-labels.csv"'},
        )
