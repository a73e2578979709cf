"""Every SQL statement the pipeline runs: parameterised, bulk where it writes many rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Optional

import psycopg2.extensions
from psycopg2.extras import execute_values

from common.keys import stored_key
from db import counts, embeddings
from db.embeddings import Embedding
from db.events import KeyEvent, apply_events, count_arrivals


@dataclass(frozen=True)
class Prediction:
    image_key: str
    model: str
    category: str
    confidence: float
    class_index: int
    top_k: list[dict]
    hostname: str
    latency_ms: Optional[float] = None
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    model_version: int = 0  # 0: a built-in model; N: the registered version NAME@N
    etag: Optional[str] = None  # of the object classified, as S3 answered the GET


@dataclass(frozen=True)
class ShadowPrediction:
    """What a shadow version said about an image; never the answer (shadow_predictions)."""

    image_key: str
    model: str
    version: int
    category: str
    confidence: float
    class_index: int
    top_k: list[dict]
    hostname: str
    infer_ms: Optional[float] = None
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


@dataclass(frozen=True)
class ErrorRow:
    """A prediction_errors row: why this key could not be classified by this model (a row to
    write, not an exception)."""

    image_key: str
    model: str
    error_type: str
    detail: str
    hostname: str
    time: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def register_images(
    conn: psycopg2.extensions.connection, images: Iterable[tuple[str, Optional[int]]], page_size: int = 1000
) -> int:
    """Insert (image_key, size_bytes) into image_info, keeping existing rows; returns rows added."""
    rows = list(images)
    if not rows:
        return 0
    with conn, conn.cursor() as cur:
        added = execute_values(
            cur,
            "INSERT INTO image_info (image_key, size_bytes) VALUES %s ON CONFLICT (image_key) DO NOTHING RETURNING 1",
            rows,
            page_size=page_size,
            fetch=True,
        )
    return len(added)


def iter_image_keys(
    conn: psycopg2.extensions.connection,
    *,
    missing_for_model: Optional[str] = None,
    older_than_version: int = 0,
    limit: Optional[int] = None,
    itersize: int = 5000,
) -> Iterator[str]:
    """Image keys in key order, read in keyset pages of `itersize`, each page in a short
    transaction of its own: memory stays flat for millions of keys, and a producer pacing
    its keys for hours (--rate) never holds a transaction open (which would hold back
    vacuum). With missing_for_model, only keys with neither a result nor an error row for
    that model (what a rerun still has to send); with older_than_version N too, keys whose
    result was written by a version older than N count as missing (re-classify them)."""
    where = ["(%(after)s::text IS NULL OR i.image_key > %(after)s)"]
    if missing_for_model is not None:
        where.append(
            "NOT EXISTS (SELECT 1 FROM prediction_results r"
            "  WHERE r.image_key = i.image_key AND r.model = %(model)s AND r.model_version >= %(version)s)"
            " AND NOT EXISTS (SELECT 1 FROM prediction_errors e"
            "  WHERE e.image_key = i.image_key AND e.model = %(model)s)"
        )
    sql = f"SELECT i.image_key FROM image_info i WHERE {' AND '.join(where)} ORDER BY i.image_key LIMIT %(page)s"
    after: Optional[str] = None
    sent = 0
    while True:
        page = itersize if limit is None else min(itersize, limit - sent)
        if page <= 0:
            return
        with conn, conn.cursor() as cur:
            cur.execute(sql, {"after": after, "model": missing_for_model, "version": older_than_version, "page": page})
            keys = [row[0] for row in cur.fetchall()]
        yield from keys  # outside the transaction: the consumer may take its time
        sent += len(keys)
        if len(keys) < page:
            return
        after = keys[-1]


def answers(conn: psycopg2.extensions.connection, keys: list[str], model: str) -> dict[str, tuple[str, float]]:
    """`model`'s (category, confidence) for each of `keys` that has a current result, in the
    caller's transaction (similar-image answers: the command line and the viewer)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT image_key, category, confidence FROM prediction_results"
            " WHERE image_key = ANY(%s) AND model = %s AND deleted_at IS NULL",
            (keys, model),
        )
        return {k: (c, p) for k, c, p in cur.fetchall()}


def count_images(conn: psycopg2.extensions.connection) -> int:
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM image_info")
        return cur.fetchone()[0]


def progress(conn: psycopg2.extensions.connection, model: str) -> dict:
    """How far `model` is: rows per host (last minute, in all), errors by type, the
    registered keys that have neither a result nor an error row yet, and how keys arrived
    per source (every model's: notification / producer -> key, skipped, refused, ...). Runs in
    the caller's transaction (the viewer's read-only one, or `with conn:`). Totals come from
    the running counts (db.counts); only the last minute is read from the table, through its
    time index."""
    totals: dict[str, int] = {}
    errors: dict[str, int] = {}
    arrivals: dict[str, dict[str, int]] = {}
    registered = done = 0
    for outcome, host, label, n in counts.summed(conn, model):
        if outcome == "result":
            totals[host] = totals.get(host, 0) + n
        elif outcome == "error":
            errors[label] = errors.get(label, 0) + n
        elif outcome == "registered":
            registered += n
        elif outcome == "done":
            done += n
        elif outcome == "arrival":  # hostname: the source; label: the kind (db.events)
            arrivals.setdefault(host, {})[label] = n
    with conn.cursor() as cur:
        cur.execute(
            """SELECT hostname, count(*) FROM prediction_results
               WHERE time > now() - interval '1 minute' AND model = %s GROUP BY 1""",
            (model,),
        )
        recent = dict(cur.fetchall())
    hosts = [{"hostname": h, "last_minute": recent.get(h, 0), "total": totals[h]} for h in sorted(totals)]
    return {
        "model": model,
        "hosts": hosts,
        "errors": dict(sorted(errors.items())),
        "results_total": sum(totals.values()),
        "errors_total": sum(errors.values()),
        "registered_keys": registered,
        "keys_without_row": max(0, registered - done),
        "arrivals": {source: dict(sorted(kinds.items())) for source, kinds in sorted(arrivals.items())},
    }


_UPSERT_PREDICTIONS = """
INSERT INTO prediction_results
    (image_key, model, category, confidence, class_index, top_k, hostname, time, latency_ms, model_version, etag)
VALUES %s
ON CONFLICT (image_key, model) DO UPDATE SET
    category = EXCLUDED.category, confidence = EXCLUDED.confidence,
    class_index = EXCLUDED.class_index, top_k = EXCLUDED.top_k, hostname = EXCLUDED.hostname,
    time = EXCLUDED.time, latency_ms = EXCLUDED.latency_ms, model_version = EXCLUDED.model_version,
    etag = EXCLUDED.etag, deleted_at = NULL, deliveries = prediction_results.deliveries + 1
-- a newer version's result replaces an older one's, never the reverse (a worker still on v1
-- after a promote, or a redelivery to one, must not put v1 back over v2)
WHERE prediction_results.model_version <= EXCLUDED.model_version
"""

_UPSERT_SHADOWS = """
INSERT INTO shadow_predictions
    (image_key, model, version, category, confidence, class_index, top_k, hostname, time, infer_ms)
VALUES %s
ON CONFLICT (image_key, model, version) DO UPDATE SET
    category = EXCLUDED.category, confidence = EXCLUDED.confidence, class_index = EXCLUDED.class_index,
    top_k = EXCLUDED.top_k, hostname = EXCLUDED.hostname, time = EXCLUDED.time, infer_ms = EXCLUDED.infer_ms
"""

# A key that was classified after an earlier failure loses its error row.
_CLEAR_ERRORS = """
DELETE FROM prediction_errors e USING (VALUES %s) AS v(image_key, model)
WHERE e.image_key = v.image_key AND e.model = v.model
"""

# An error never replaces a result: a key ends in exactly one of the two tables.
_UPSERT_ERRORS = """
INSERT INTO prediction_errors (image_key, model, error_type, detail, hostname, time)
SELECT v.image_key, v.model, v.error_type, v.detail, v.hostname, v.time::timestamptz
FROM (VALUES %s) AS v(image_key, model, error_type, detail, hostname, time)
WHERE NOT EXISTS (SELECT 1 FROM prediction_results r
                  WHERE r.image_key = v.image_key AND r.model = v.model)
ON CONFLICT (image_key, model) DO UPDATE SET
    error_type = EXCLUDED.error_type, detail = EXCLUDED.detail, hostname = EXCLUDED.hostname,
    time = EXCLUDED.time, attempts = prediction_errors.attempts + 1
"""


def _last_per_key(rows: Iterable) -> list:
    """One row per (image_key, model): ON CONFLICT may not touch a row twice in one statement."""
    return list({(r.image_key, r.model): r for r in rows}.values())


# Two workers may write the same key at once during a rebalance: under READ COMMITTED one
# could insert a result while the other's "no result yet" check passes and inserts an error.
# A transaction-scoped advisory lock per (model, key), taken in one order, serialises them.
_LOCK_KEYS = """
SELECT pg_advisory_xact_lock(h) FROM (
    SELECT DISTINCT hashtextextended(v.model || chr(31) || v.image_key, 0) AS h
    FROM (VALUES %s) AS v(model, image_key) ORDER BY 1) AS locks
"""


def write_batch(
    conn: psycopg2.extensions.connection,
    predictions: Iterable[Prediction],
    errors: Iterable[ErrorRow] = (),
    shadows: Iterable[ShadowPrediction] = (),
    events: Iterable[KeyEvent] = (),
    arrivals: Optional[dict[tuple[str, str], int]] = None,
    vectors: Iterable[Embedding] = (),
) -> int:
    """Write a batch's results, errors and shadow results in one transaction (all or nothing),
    with the S3 events its keys arrived by (db.events), the arrival counts and the images'
    embeddings (db.embeddings: none without its rows, one per key however often it is
    delivered). The rows (and embedding) of a
    key whose event was older than the one already applied are left out. Returns how many
    events were stale. Keys longer than common.keys.MAX_STORED_KEY_BYTES are stored in their
    bounded form."""
    preds = _last_per_key(replace(p, image_key=stored_key(p.image_key)) for p in predictions)
    errs = _last_per_key(replace(e, image_key=stored_key(e.image_key), detail=e.detail[:2000]) for e in errors)
    shads = list(
        {(s.image_key, s.model, s.version): replace(s, image_key=stored_key(s.image_key)) for s in shadows}.values()
    )
    events = list(events)
    arrivals = dict(arrivals or {})
    vecs = [replace(v, image_key=stored_key(v.image_key)) for v in vectors]
    if not preds and not errs and not shads and not events and not arrivals:
        return 0
    with conn, conn.cursor() as cur:
        stale = 0
        if preds or errs:
            keys = sorted({(r.model, r.image_key) for r in [*preds, *errs]})
            execute_values(cur, _LOCK_KEYS, keys, page_size=100_000)
        if events:
            current, stale = apply_events(cur, events)
            late = {stored_key(e.image_key) for e in events} - current  # stale, or removed since
            preds = [p for p in preds if p.image_key not in late]
            errs = [e for e in errs if e.image_key not in late]
            shads = [s for s in shads if s.image_key not in late]
            vecs = [v for v in vecs if v.image_key not in late]
            arrivals[("notification", "stale")] = arrivals.get(("notification", "stale"), 0) + stale
        count_arrivals(cur, arrivals)
        if preds:
            rows = [
                (
                    p.image_key,
                    p.model,
                    p.category,
                    p.confidence,
                    p.class_index,
                    json.dumps(p.top_k),
                    p.hostname,
                    p.time,
                    p.latency_ms,
                    p.model_version,
                    p.etag,
                )
                for p in preds
            ]
            execute_values(cur, _UPSERT_PREDICTIONS, rows, page_size=1000)
            execute_values(cur, _CLEAR_ERRORS, [(p.image_key, p.model) for p in preds], page_size=1000)
        if errs:
            rows = [(e.image_key, e.model, str(e.error_type), e.detail, e.hostname, e.time) for e in errs]
            execute_values(cur, _UPSERT_ERRORS, rows, page_size=1000)
        if shads:
            rows = [
                (
                    s.image_key,
                    s.model,
                    s.version,
                    s.category,
                    s.confidence,
                    s.class_index,
                    json.dumps(s.top_k),
                    s.hostname,
                    s.time,
                    s.infer_ms,
                )
                for s in shads
            ]
            execute_values(cur, _UPSERT_SHADOWS, rows, page_size=1000)
        classified = {p.image_key for p in preds}
        embeddings.upsert(cur, [v for v in vecs if v.image_key in classified])
    return stale
