"""Keys that arrive by S3 event notification, in the worker's batch transaction (migration 0007).

A notification's event registers its key in image_info (eTag, size, the event's order stamp)
together with the key's row. Events of one key arrive in any order and on any partition, so
a later-arriving older event must never put an older answer back: an event is applied only
if its stamp is not older than the one image_info holds, and the rows of an event that was
not applied are left out of the batch (counted as `stale`). A removal marks the key's rows and
its embedding deleted. An event without a stamp (a form
that sends no sequencer) is always applied and keeps the stored stamp.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import psycopg2.extensions
from psycopg2.extras import execute_values

from common.keys import stored_key
from db import embeddings


@dataclass(frozen=True)
class KeyEvent:
    """What one event said about a key of the worker's bucket."""

    image_key: str
    stamp: str = ""  # orders events of this key; "" when the form carries no sequencer
    etag: str | None = None
    size: int | None = None
    removed: bool = False


_REGISTER = """
INSERT INTO image_info AS i (image_key, size_bytes, etag, event_stamp, source, deleted_at)
SELECT v.image_key, v.size_bytes::bigint, v.etag, v.event_stamp, 'notification',
       CASE WHEN v.removed THEN now() END
FROM (VALUES %s) AS v(image_key, size_bytes, etag, event_stamp, removed)
ON CONFLICT (image_key) DO UPDATE SET
    size_bytes = COALESCE(EXCLUDED.size_bytes, i.size_bytes),
    etag = COALESCE(EXCLUDED.etag, i.etag),
    event_stamp = CASE WHEN EXCLUDED.event_stamp = '' THEN i.event_stamp ELSE EXCLUDED.event_stamp END,
    deleted_at = EXCLUDED.deleted_at
WHERE EXCLUDED.event_stamp = '' OR i.event_stamp IS NULL OR i.event_stamp <= EXCLUDED.event_stamp
RETURNING image_key
"""

_MARK_REMOVED = """
UPDATE prediction_results SET deleted_at = now()
WHERE image_key = ANY(%(keys)s) AND deleted_at IS NULL
"""

_MARK_ERRORS_REMOVED = """
UPDATE prediction_errors SET deleted_at = now()
WHERE image_key = ANY(%(keys)s) AND deleted_at IS NULL
"""


def newest_per_key(events: Iterable[KeyEvent]) -> tuple[list[KeyEvent], int]:
    """One event per key, the one with the highest stamp (the later one of equal stamps, as
    ON CONFLICT may touch a row once per statement); and how many were older."""
    newest: dict[str, KeyEvent] = {}
    seen = 0
    for e in events:
        seen += 1
        e = KeyEvent(stored_key(e.image_key), e.stamp, e.etag, e.size, e.removed)
        kept = newest.get(e.image_key)
        if kept is None or not e.stamp or not kept.stamp or kept.stamp <= e.stamp:
            newest[e.image_key] = e
    return list(newest.values()), seen - len(newest)


def apply_events(cur: psycopg2.extensions.cursor, events: Iterable[KeyEvent]) -> tuple[set[str], int]:
    """Register the batch's events; returns the (stored) keys whose newest event, a creation,
    was applied (their rows are current: the others' are not written) and how many events
    were stale. Removed keys' rows are marked deleted."""
    newest, stale = newest_per_key(events)
    if not newest:
        return set(), stale
    # in key order: two workers' batches then lock their image_info rows in the same order
    rows = sorted((e.image_key, e.size, e.etag, e.stamp, e.removed) for e in newest)
    applied = {r[0] for r in execute_values(cur, _REGISTER, rows, page_size=1000, fetch=True)}
    removed = [e.image_key for e in newest if e.removed and e.image_key in applied]
    if removed:
        cur.execute(_MARK_REMOVED, {"keys": removed})
        cur.execute(_MARK_ERRORS_REMOVED, {"keys": removed})
        embeddings.mark_removed(cur, removed)
    return applied - set(removed), stale + len(newest) - len(applied)


def count_arrivals(cur: psycopg2.extensions.cursor, counts: Mapping[tuple[str, str], int]) -> None:
    """Add (source, kind) -> n to the running totals (outcome 'arrival', hostname = source)."""
    rows = [("", source, "arrival", kind, n) for (source, kind), n in sorted(counts.items()) if n]
    if rows:
        execute_values(
            cur, "INSERT INTO prediction_count_deltas (model, hostname, outcome, label, delta) VALUES %s", rows
        )


_REGISTER_LISTED = """
INSERT INTO image_info (image_key, size_bytes, etag, source)
SELECT v.image_key, v.size_bytes::bigint, v.etag, 'listing' FROM (VALUES %s) AS v(image_key, size_bytes, etag)
ON CONFLICT (image_key) DO NOTHING
"""

# Listed keys with no current row: no result of `version` or later for the object's eTag
# (an overwrite whose event was lost), or a result marked deleted; and no error row.
_MISSING = """
SELECT v.image_key FROM unnest(%(keys)s::text[], %(etags)s::text[]) AS v(image_key, etag)
WHERE NOT EXISTS (SELECT 1 FROM prediction_results r
                  WHERE r.image_key = v.image_key AND r.model = %(model)s AND r.model_version >= %(version)s
                    AND r.deleted_at IS NULL AND (r.etag IS NULL OR v.etag IS NULL OR r.etag = v.etag))
  AND NOT EXISTS (SELECT 1 FROM prediction_errors e
                  WHERE e.image_key = v.image_key AND e.model = %(model)s AND e.deleted_at IS NULL)
"""


def register_listed(conn: psycopg2.extensions.connection, objects: list[tuple[str, int | None, str | None]]) -> None:
    """Register (key, size, eTag) found by listing the bucket; keys already known are kept."""
    if objects:
        with conn, conn.cursor() as cur:
            execute_values(cur, _REGISTER_LISTED, [(stored_key(k), s, e) for k, s, e in objects], page_size=1000)


def missing(
    conn: psycopg2.extensions.connection, objects: list[tuple[str, str | None]], model: str, version: int
) -> list[str]:
    """The keys among listed (key, eTag) that still need a row for `model` at `version`, in order."""
    if not objects:
        return []
    params = {"keys": [k for k, _ in objects], "etags": [e for _, e in objects], "model": model, "version": version}
    with conn, conn.cursor() as cur:
        cur.execute(_MISSING, params)
        found = {r[0] for r in cur.fetchall()}
    return [k for k, _ in objects if k in found]
