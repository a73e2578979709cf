"""The model registry in PostgreSQL (`models`): versions of a model trained on the user's own
categories, and their stages. candidate -> shadow -> production -> retired; one production
and at most one shadow version per name (unique partial indexes). Every change of stage is
one transaction."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

import psycopg2.extensions

from common.errors import VisionScalingError
from settings import check_model_name

STAGES = ("candidate", "shadow", "production", "retired")
KINDS = ("network", "map", "mix", "linear")
MAX_VERSION = 2**31 - 1  # models.version is a PostgreSQL integer
_LOCK_NAMESPACE = 7_404_300  # advisory locks per model name: version numbers and stage changes


class RegistryError(VisionScalingError, ValueError):
    """A registry request that cannot be done (no such version, a bad stage): nothing changed."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    sha256: str
    uri: str
    base_model: str
    categories: list[str]
    preprocessing: dict
    metrics: dict
    data_fingerprint: str
    stage: str = "candidate"
    created_at: Optional[datetime] = None
    stage_changed_at: Optional[datetime] = None
    kind: str = "network"  # what the artefact holds: KINDS (migration 0008)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


_COLUMNS = (
    "name, version, sha256, uri, base_model, categories, preprocessing, metrics, data_fingerprint, "
    "stage, created_at, stage_changed_at, kind"
)


def parse_ref(ref: str) -> tuple[str, Optional[int]]:
    """'NAME@N' -> (NAME, N); 'NAME' -> (NAME, None). NAME follows settings.check_model_name,
    so no reference names a model that fit could not have made or a worker could not serve."""
    name, at, version = ref.partition("@")
    try:
        check_model_name(name)
    except ValueError as exc:
        raise RegistryError(f"not a model reference: {ref!r} (expected NAME or NAME@N): {exc}") from None
    if not at:
        return name, None
    # ASCII digits only: str.isdigit() also says yes to '²' (which int() refuses) and to '١'
    if not re.fullmatch(r"[0-9]{1,10}", version) or not 1 <= int(version) <= MAX_VERSION:
        raise RegistryError(f"not a version number in {ref!r} (expected NAME@N, N from 1 to {MAX_VERSION})")
    return name, int(version)


def _row(r) -> ModelVersion:
    return ModelVersion(*r)


def _lock(cur, name: str) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_NAMESPACE, name))


def next_version(cur, name: str) -> int:
    """Inside the caller's transaction, with the name locked until it commits."""
    _lock(cur, name)
    cur.execute("SELECT coalesce(max(version), 0) + 1 FROM models WHERE name = %s", (name,))
    return cur.fetchone()[0]


def registered(cur, name: str, version: int) -> bool:
    """Whether a row names NAME@N (inside the caller's transaction)."""
    cur.execute("SELECT 1 FROM models WHERE name = %s AND version = %s", (name, version))
    return cur.fetchone() is not None


def insert(cur, mv: ModelVersion) -> None:
    cur.execute(
        "INSERT INTO models (name, version, sha256, uri, base_model, categories, preprocessing, metrics,"
        " data_fingerprint, kind) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            mv.name,
            mv.version,
            mv.sha256,
            mv.uri,
            mv.base_model,
            json.dumps(mv.categories),
            json.dumps(mv.preprocessing),
            json.dumps(mv.metrics),
            mv.data_fingerprint,
            mv.kind,
        ),
    )


def get(conn: psycopg2.extensions.connection, name: str, version: Optional[int] = None) -> ModelVersion:
    """NAME@N, or with no version the production one (else the latest)."""
    with conn.cursor() as cur:
        if version is not None:
            cur.execute(f"SELECT {_COLUMNS} FROM models WHERE name = %s AND version = %s", (name, version))
        else:
            cur.execute(
                f"SELECT {_COLUMNS} FROM models WHERE name = %s ORDER BY stage = 'production' DESC, version DESC"
                " LIMIT 1",
                (name,),
            )
        row = cur.fetchone()
    if row is None:
        raise RegistryError(f"no model {name}@{version}" if version else f"no model named {name!r}")
    return _row(row)


def list_versions(conn: psycopg2.extensions.connection, name: Optional[str] = None) -> list[ModelVersion]:
    with conn.cursor() as cur:
        if name is None:
            cur.execute(f"SELECT {_COLUMNS} FROM models ORDER BY name, version")
        else:
            cur.execute(f"SELECT {_COLUMNS} FROM models WHERE name = %s ORDER BY version", (name,))
        return [_row(r) for r in cur.fetchall()]


def serving(conn: psycopg2.extensions.connection, name: str) -> tuple[Optional[ModelVersion], Optional[ModelVersion]]:
    """(production, shadow) versions of `name`, either None."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM models WHERE name = %s AND stage IN ('production', 'shadow')",
            (name,),
        )
        rows = [_row(r) for r in cur.fetchall()]
    by_stage = {r.stage: r for r in rows}
    return by_stage.get("production"), by_stage.get("shadow")


def serving_all(
    conn: psycopg2.extensions.connection, names: list[str]
) -> dict[str, tuple[Optional[ModelVersion], Optional[ModelVersion]]]:
    """{name: (production, shadow)} for each of `names`, in one query (either may be None)."""
    with conn.cursor() as cur:
        cur.execute(
            f"SELECT {_COLUMNS} FROM models WHERE name = ANY(%s) AND stage IN ('production', 'shadow')",
            (list(names),),
        )
        rows = [_row(r) for r in cur.fetchall()]
    out: dict[str, tuple[Optional[ModelVersion], Optional[ModelVersion]]] = {}
    for name in names:
        by_stage = {r.stage: r for r in rows if r.name == name}
        out[name] = (by_stage.get("production"), by_stage.get("shadow"))
    return out


def set_stage(conn: psycopg2.extensions.connection, name: str, version: int, stage: str) -> ModelVersion:
    """Move NAME@N to `stage` in one transaction. Promoting demotes the current production
    version to retired (rollback = promoting it again); shadowing replaces the current shadow
    (back to candidate). A missing version or stage is an error and changes nothing, and so is
    moving the production version anywhere but production: once a name has one, it keeps one."""
    if stage not in STAGES:
        raise RegistryError(f"no stage {stage!r}; stages are {', '.join(STAGES)}")
    with conn, conn.cursor() as cur:
        _lock(cur, name)
        cur.execute("SELECT stage FROM models WHERE name = %s AND version = %s", (name, version))
        row = cur.fetchone()
        if row is None:
            raise RegistryError(f"no model {name}@{version}: nothing changed")
        if row[0] == "production" and stage != "production":
            # a worker started without a production version cannot start, and running workers
            # would go on serving it: "retire" would not even stop it
            raise RegistryError(
                f"{name}@{version} is the production version; to stop serving it, promote another "
                "version first (nothing changed)"
            )
        if stage == "production":
            cur.execute(
                "UPDATE models SET stage = 'retired', stage_changed_at = now()"
                " WHERE name = %s AND stage = 'production' AND version <> %s",
                (name, version),
            )
        if stage == "shadow":
            cur.execute(
                "UPDATE models SET stage = 'candidate', stage_changed_at = now()"
                " WHERE name = %s AND stage = 'shadow' AND version <> %s",
                (name, version),
            )
        cur.execute(
            "UPDATE models SET stage = %s, stage_changed_at = now() WHERE name = %s AND version = %s",
            (stage, name, version),
        )
    with conn:
        return get(conn, name, version)


def shadow_agreement(conn: psycopg2.extensions.connection, name: str) -> dict:
    """Top-1 agreement of the shadow version with production on the images both classified,
    overall and per production category, and the shadow model's time per image."""
    production, shadow = serving(conn, name)
    if production is None or shadow is None:
        missing = " and ".join(s for s, v in (("production", production), ("shadow", shadow)) if v is None)
        return {"model": name, "error": f"{name} has no {missing} version", "images": 0}
    with conn.cursor() as cur:
        cur.execute(
            """SELECT r.category, count(*), count(*) FILTER (WHERE s.category = r.category), avg(s.infer_ms)
               FROM shadow_predictions s
               JOIN prediction_results r ON r.image_key = s.image_key AND r.model = s.model
               WHERE s.model = %s AND s.version = %s AND r.model_version = %s
               GROUP BY 1 ORDER BY 2 DESC, 1""",
            (name, shadow.version, production.version),
        )
        rows = cur.fetchall()
    images = sum(n for _, n, _, _ in rows)
    agree = sum(a for _, _, a, _ in rows)
    cost = sum((ms or 0.0) * n for _, n, _, ms in rows) / images if images else None
    return {
        "model": name,
        "production": production.ref,
        "shadow": shadow.ref,
        "images": images,
        "agreement": round(agree / images, 4) if images else None,
        "shadow_ms_per_image": round(cost, 3) if cost is not None else None,
        "per_category": {c: {"images": n, "agreement": round(a / n, 4)} for c, n, a, _ in rows},
    }
