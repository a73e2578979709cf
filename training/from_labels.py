"""fit --from-labels NAME: the current labels people gave in the viewer for the project NAME
(db/labels.py), as the `image_key,category` CSV that `fit --labels` takes, so both paths
train, measure and register alike (from the stored embeddings when every key has one)."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import psycopg2

from db import labels
from db.connection import in_transaction
from settings import Settings
from training.dataset import DatasetError


class LabelsUnavailable(DatasetError):
    """The labels table could not be read (PostgreSQL down, or not migrated)."""


def labels_file(settings: Settings, name: str) -> Path:
    """A temporary CSV of NAME's current labels; the caller removes it."""
    try:
        rows = in_transaction(settings, lambda conn: labels.labelled_rows(conn, name))
    except psycopg2.errors.UndefinedTable:
        raise LabelsUnavailable("the database has no labels table: run `python -m db migrate` first") from None
    except psycopg2.Error as exc:
        raise LabelsUnavailable(f"cannot read the labels: PostgreSQL: {str(exc).strip().splitlines()[0]}") from None
    if not rows:
        raise DatasetError(f"no labels for {name}: label its images in the viewer first (Label, {name})")
    fd, path = tempfile.mkstemp(prefix=f"labels-{name}-", suffix=".csv")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["image_key", "category"])
        writer.writerows(rows)
    return Path(path)
