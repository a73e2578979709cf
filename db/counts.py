"""The running totals of migration 0006: what the viewer polls instead of whole-table aggregates.

Every read sums the folded counts and the deltas not folded yet, in the caller's transaction,
so it costs the size of those two small tables, not of prediction_results.
"""

from __future__ import annotations

from typing import Optional

import psycopg2.extensions

_SUMMED = """
SELECT model, outcome, hostname, label, sum(n)::bigint FROM (
    SELECT model, outcome, hostname, label, n FROM prediction_counts WHERE model = ANY(%(models)s)
    UNION ALL
    SELECT model, outcome, hostname, label, delta FROM prediction_count_deltas WHERE model = ANY(%(models)s)
) AS t GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0
"""


def summed(conn: psycopg2.extensions.connection, model: str) -> list[tuple[str, str, str, int]]:
    """(outcome, hostname, label, n) for `model`, plus ('registered', '', '', n)."""
    with conn.cursor() as cur:
        cur.execute(_SUMMED, {"models": [model, ""]})
        return [(outcome, host, label, n) for _, outcome, host, label, n in cur.fetchall()]


def count_results(
    conn: psycopg2.extensions.connection, model: str, category: Optional[str] = None, host: Optional[str] = None
) -> int:
    """Result rows of `model`, optionally of one category and/or one host."""
    return sum(
        n
        for outcome, h, label, n in summed(conn, model)
        if outcome == "result" and (category is None or label == category) and (host is None or h == host)
    )


def model_names(conn: psycopg2.extensions.connection) -> set[str]:
    """Models that have at least one result row."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT model FROM (
                   SELECT model, n FROM prediction_counts WHERE outcome = 'result'
                   UNION ALL SELECT model, delta FROM prediction_count_deltas WHERE outcome = 'result'
               ) AS t GROUP BY 1 HAVING sum(n) > 0"""
        )
        return {r[0] for r in cur.fetchall()}


def recount(conn: psycopg2.extensions.connection) -> None:
    """Recompute every total from the tables (full scans; `python -m db recount`)."""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT vs_recount_predictions()")
