"""The viewer's read-only SQL. Every value is a query parameter; filters are composed with
psycopg2.sql, never by string formatting."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import psycopg2.extensions
from psycopg2 import sql

from db import counts
from db.queries import progress

COLUMNS = (
    "image_key, model, model_version, category, confidence, class_index, top_k, hostname, time, latency_ms,"
    " etag, deleted_at"
)


@dataclass(frozen=True)
class Filters:
    model: str
    category: Optional[str] = None
    host: Optional[str] = None
    min_confidence: Optional[float] = None
    max_confidence: Optional[float] = None
    search: Optional[str] = None  # a substring of the key, case-insensitive
    include_deleted: bool = False  # rows of objects an S3 notification said were removed

    def where(self) -> tuple[sql.Composable, list[Any]]:
        clauses, params = [sql.SQL("model = %s")], [self.model]
        if not self.include_deleted:
            clauses.append(sql.SQL("deleted_at IS NULL"))
        if self.category:
            clauses.append(sql.SQL("category = %s"))
            params.append(self.category)
        if self.host:
            clauses.append(sql.SQL("hostname = %s"))
            params.append(self.host)
        if self.min_confidence is not None:
            clauses.append(sql.SQL("confidence >= %s"))
            params.append(self.min_confidence)
        if self.max_confidence is not None:
            clauses.append(sql.SQL("confidence <= %s"))
            params.append(self.max_confidence)
        if self.search:
            # strpos, not LIKE: a key search for "100%_off" means those characters.
            clauses.append(sql.SQL("strpos(lower(image_key), lower(%s)) > 0"))
            params.append(self.search)
        return sql.SQL(" AND ").join(clauses), params


def _row(cur, row) -> dict:
    item = dict(zip([c.name for c in cur.description], row))
    for name in ("time", "deleted_at"):
        if item.get(name) is not None:
            item[name] = item[name].isoformat()
    return item


def list_predictions(
    conn: psycopg2.extensions.connection, filters: Filters, limit: int, offset: int = 0
) -> tuple[list[dict], int, bool]:
    """The newest predictions matching `filters` (a page of them), how many match in all, and
    whether that number is only a floor (see count_matching)."""
    where, params = filters.where()
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "SELECT " + COLUMNS + " FROM prediction_results WHERE {} "
                "ORDER BY time DESC, image_key LIMIT %s OFFSET %s"
            ).format(where),
            [*params, limit, offset],
        )
        items = [_row(cur, r) for r in cur.fetchall()]
    return (items, *count_matching(conn, filters))


# Past this many matches a filter the running totals cannot answer says "at least": counting
# every match of a confidence or key-search filter is a scan of the table on every page
# (benchmarks/viewer_stats.py times the viewer's queries on a large table).
COUNT_CAP = 10_000


def count_matching(conn: psycopg2.extensions.connection, filters: Filters) -> tuple[int, bool]:
    """How many results match and whether that is only a floor: exact from the running totals
    for model/category/host filters, else counted up to COUNT_CAP ("more than COUNT_CAP")."""
    if filters.min_confidence is None and filters.max_confidence is None and not filters.search:
        n = counts.count_results(conn, filters.model, filters.category, filters.host)
        if not filters.include_deleted:  # the totals count them: take the few marked deleted off
            where, params = replace(filters, include_deleted=True).where()
            with conn.cursor() as cur:
                query = "SELECT count(*) FROM prediction_results WHERE {} AND deleted_at IS NOT NULL"
                cur.execute(sql.SQL(query).format(where), params)
                n -= cur.fetchone()[0]
        return n, False
    where, params = filters.where()
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM prediction_results WHERE {} LIMIT %s) AS m").format(where),
            [*params, COUNT_CAP + 1],
        )
        n = cur.fetchone()[0]
    return min(n, COUNT_CAP), n > COUNT_CAP


def get_prediction(conn: psycopg2.extensions.connection, key: str, model: str) -> Optional[dict]:
    with conn.cursor() as cur:
        cur.execute("SELECT " + COLUMNS + " FROM prediction_results WHERE image_key = %s AND model = %s", (key, model))
        row = cur.fetchone()
        return _row(cur, row) if row else None


def get_error(conn: psycopg2.extensions.connection, key: str, model: str) -> Optional[dict]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT image_key, model, error_type, detail, hostname, time, attempts
                       FROM prediction_errors WHERE image_key = %s AND model = %s""",
            (key, model),
        )
        row = cur.fetchone()
        return _row(cur, row) if row else None


def recent_errors(conn: psycopg2.extensions.connection, model: str, limit: int) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT image_key, error_type, detail, hostname, time, attempts FROM prediction_errors
                       WHERE model = %s ORDER BY time DESC, image_key LIMIT %s""",
            (model, limit),
        )
        return [_row(cur, r) for r in cur.fetchall()]


def class_histogram(conn: psycopg2.extensions.connection, model: str, limit: int) -> list[dict]:
    per_class: dict[str, int] = {}
    for outcome, _, label, n in counts.summed(conn, model):
        if outcome == "result":
            per_class[label] = per_class.get(label, 0) + n
    ranked = sorted(per_class.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [{"category": c, "count": n} for c, n in ranked if n > 0]


def hostnames(conn: psycopg2.extensions.connection, model: str) -> list[str]:
    per_host: dict[str, int] = {}
    for outcome, host, _, n in counts.summed(conn, model):
        if outcome == "result":
            per_host[host] = per_host.get(host, 0) + n
    return sorted(h for h, n in per_host.items() if n > 0)


def totals(conn: psycopg2.extensions.connection, model: str) -> dict:
    """db.queries.progress, with the key names of the viewer's API."""
    stats = progress(conn, model)
    stats["errors_by_type"] = stats.pop("errors")
    return stats


def host_rates(conn: psycopg2.extensions.connection, model: str, minutes: int, bin_seconds: int) -> dict:
    """Images per second per host in `bin_seconds` bins over the last `minutes` minutes
    (bins without rows are absent: a host that stopped shows a gap, not a made-up zero line)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT hostname,
                              to_timestamp(floor(extract(epoch FROM time) / %(bin)s) * %(bin)s) AS bin,
                              count(*)
                       FROM prediction_results
                       WHERE model = %(model)s AND time > now() - make_interval(mins => %(minutes)s)
                       GROUP BY 1, 2 ORDER BY 1, 2""",
            {"bin": bin_seconds, "model": model, "minutes": minutes},
        )
        series: dict[str, list] = {}
        for host, t, n in cur.fetchall():
            series.setdefault(host, []).append([t.isoformat(), round(n / bin_seconds, 2)])
        cur.execute("SELECT now()")
        now = cur.fetchone()[0]
    return {"bin_seconds": bin_seconds, "minutes": minutes, "now": now.isoformat(), "hosts": series}


def models(conn: psycopg2.extensions.connection, default: str) -> list[str]:
    """Model names to filter on: the default one, every registered one, and any with rows."""
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT name FROM models")
        names = {r[0] for r in cur.fetchall()} | counts.model_names(conn)
    return [default, *sorted(names - {default})]


def model_versions(conn: psycopg2.extensions.connection) -> list[dict]:
    """Every registered version with its stage and metrics, and per name the shadow agreement."""
    from db import registry

    out = []
    versions = registry.list_versions(conn)
    for mv in versions:
        item = {
            k: getattr(mv, k)
            for k in (
                "name",
                "version",
                "stage",
                "base_model",
                "categories",
                "metrics",
                "sha256",
                "uri",
                "data_fingerprint",
            )
        }
        item["created_at"] = mv.created_at.isoformat() if mv.created_at else None
        item["stage_changed_at"] = mv.stage_changed_at.isoformat() if mv.stage_changed_at else None
        out.append(item)
    agreement = {name: registry.shadow_agreement(conn, name) for name in {mv.name for mv in versions}}
    return [
        {**item, "shadow_agreement": agreement[item["name"]] if item["stage"] == "shadow" else None} for item in out
    ]
