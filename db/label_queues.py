"""The queues that choose what people label, and their leases (migration 0012).

A queue hands out images under a short lease (label_leases): claiming is one INSERT ... ON
CONFLICT over the candidates, atomic per image, so two labellers asking at once never get the
same image, and a lease that lapses frees the image for the next one. Where the images have
stored embeddings, a page of a queue holds no two near-duplicates (db/similar.NEAR_DUPLICATE):
labelling the same photo twice teaches nothing.

- margin: unlabelled images, the smallest gap between the model's top two answers first;
- random: unlabelled images, a uniform sample (its labels estimate the model's accuracy);
- disagreement: unlabelled images where the shadow version's answer differs from production's;
- mislabel: labelled images whose label the model contradicts with confidence >= MISLABEL_CONFIDENCE.
"""

from __future__ import annotations

import numpy as np
import psycopg2.extensions

from db.embeddings import decode
from db.similar import NEAR_DUPLICATE

Conn = psycopg2.extensions.connection
QUEUES = ("margin", "random", "disagreement", "mislabel")
MISLABEL_CONFIDENCE = 0.8
MARGIN = "(r.top_k->0->>'confidence')::real - coalesce((r.top_k->1->>'confidence')::real, 0)"
CURRENT = """(SELECT l.category FROM labels l WHERE l.model_name = %(m)s AND l.image_key = r.image_key
              ORDER BY l.id DESC LIMIT 1)"""
_WHERE = {
    "margin": f"{CURRENT} IS NULL",
    "random": f"{CURRENT} IS NULL",
    "disagreement": f"""{CURRENT} IS NULL AND EXISTS (
        SELECT 1 FROM shadow_predictions s JOIN models v ON v.name = s.model AND v.version = s.version
        WHERE s.image_key = r.image_key AND s.model = %(m)s AND v.stage = 'shadow' AND s.category <> r.category)""",
    "mislabel": f"{CURRENT} <> r.category AND r.confidence >= %(confident)s",
}
_ORDER = {"margin": MARGIN, "random": "random()", "disagreement": "random()", "mislabel": "r.confidence DESC"}


def has_rows(conn: Conn, model_name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM prediction_results WHERE model = %s)", (model_name,))
        return cur.fetchone()[0]


def claim(conn: Conn, model_name: str, source: str, queue: str, holder: str, n: int, lease_s: float) -> list[dict]:
    """Up to n images of the queue nobody holds, leased to `holder` for lease_s, as the
    `source` model classified them (rows not removed). Images the holder already holds are not
    handed out again, so each call brings new ones."""
    with conn.cursor() as cur:
        # asking again renews the holder's leases: the images on their page stay theirs
        cur.execute(
            """UPDATE label_leases SET until = now() + %s * interval '1 second'
               WHERE model_name = %s AND holder = %s AND until > now()""",
            (lease_s, model_name, holder),
        )
        cur.execute(
            f"""SELECT r.image_key, r.category, r.confidence, r.top_k, {MARGIN}
                FROM prediction_results r
                WHERE r.model = %(s)s AND r.deleted_at IS NULL AND {_WHERE[queue]}
                  AND NOT EXISTS (SELECT 1 FROM label_leases x WHERE x.model_name = %(m)s
                                  AND x.image_key = r.image_key AND x.until > now())
                ORDER BY {_ORDER[queue]} LIMIT %(n)s""",
            {"m": model_name, "s": source, "n": n * 3, "confident": MISLABEL_CONFIDENCE},
        )
        candidates = _without_near_duplicates(cur, cur.fetchall())
        if not candidates:
            return []
        cur.execute(
            """INSERT INTO label_leases (model_name, image_key, holder, until)
               SELECT %s, k, %s, now() + %s * interval '1 second' FROM unnest(%s::text[]) k
               ORDER BY k  -- every claim takes its rows in one order: two claims cannot deadlock
               ON CONFLICT (model_name, image_key) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
               WHERE label_leases.until <= now()
               RETURNING image_key""",
            (model_name, holder, lease_s, [c[0] for c in candidates]),
        )
        got = {row[0] for row in cur.fetchall()}
        kept = [c for c in candidates if c[0] in got][:n]
        extra = got - {c[0] for c in kept}  # asked for more in case of races: the rest go back
        if extra:
            cur.execute(
                "DELETE FROM label_leases WHERE model_name = %s AND holder = %s AND image_key = ANY(%s)",
                (model_name, holder, sorted(extra)),
            )
    return [
        {"image_key": k, "category": c, "confidence": p, "top_k": t, "margin": None if m is None else round(m, 4)}
        for k, c, p, t, m in kept
    ]


def _without_near_duplicates(cur, candidates: list[tuple]) -> list[tuple]:
    """The candidates in order, each dropped when its embedding is a near-duplicate of one
    kept before it (candidates without an embedding are kept)."""
    keys = [c[0] for c in candidates]
    if len(keys) < 2:
        return candidates
    cur.execute(
        """SELECT DISTINCT ON (image_key) image_key, vector FROM image_embeddings
           WHERE image_key = ANY(%s) AND deleted_at IS NULL ORDER BY image_key, time DESC""",
        (keys,),
    )
    rows = cur.fetchall()
    if not rows:
        return candidates
    vectors = dict(zip((r[0] for r in rows), decode(r[1] for r in rows)))
    kept: list[tuple] = []
    kept_vectors: list[np.ndarray] = []
    for c in candidates:
        v = vectors.get(c[0])
        if v is not None and kept_vectors and float(np.max(np.stack(kept_vectors) @ v)) >= NEAR_DUPLICATE:
            continue
        kept.append(c)
        if v is not None:
            kept_vectors.append(v)
    return kept
