"""People's labels, their projects, and the queues that choose what to label (migration 0012).

A label is a row that is never updated: relabelling adds a row, so an image's history is its
rows and its current label is the newest (a NULL category is a label taken back). A queue
hands out images under a short lease (label_leases): claiming is one INSERT ... ON CONFLICT per
image, so two labellers asking at once never get the same image, and a lease that lapses frees
the image for the next one. Only SQL lives here; the rules are viewer/labelling.py's.
"""

from __future__ import annotations

from typing import Optional

import psycopg2.extensions
from psycopg2.extras import execute_values

Conn = psycopg2.extensions.connection
QUEUES = ("margin", "random")
MARGIN = "(r.top_k->0->>'confidence')::real - coalesce((r.top_k->1->>'confidence')::real, 0)"


def create_project(conn: Conn, model_name: str, categories: list[str], actor: str) -> bool:
    """False when the project exists already."""
    with conn.cursor() as cur:
        cur.execute(
            """INSERT INTO labelling_projects (model_name, categories, created_by) VALUES (%s, %s, %s)
               ON CONFLICT DO NOTHING""",
            (model_name, categories, actor),
        )
        return cur.rowcount == 1


def projects(conn: Conn) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute("""SELECT p.model_name, p.categories, p.created_by, p.created_at,
                              (SELECT count(DISTINCT image_key) FROM labels l WHERE l.model_name = p.model_name)
                       FROM labelling_projects p ORDER BY p.model_name""")
        return [
            {"model": m, "categories": c, "created_by": b, "created_at": t.isoformat(), "labelled_keys": n}
            for m, c, b, t, n in cur.fetchall()
        ]


def project_categories(conn: Conn, model_name: str) -> Optional[list[str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT categories FROM labelling_projects WHERE model_name = %s", (model_name,))
        row = cur.fetchone()
    return list(row[0]) if row else None


def current(conn: Conn, model_name: str, keys: list[str]) -> dict[str, Optional[str]]:
    """Each key's current label (None: taken back); keys never labelled are absent."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT DISTINCT ON (image_key) image_key, category FROM labels
               WHERE model_name = %s AND image_key = ANY(%s) ORDER BY image_key, id DESC""",
            (model_name, keys),
        )
        return dict(cur.fetchall())


def add(
    conn: Conn,
    model_name: str,
    keys: list[str],
    category: Optional[str],
    who: str,
    how: str,
    queue: Optional[str] = None,
) -> dict[str, Optional[str]]:
    """Label `keys` (one row each) and let go of their leases; returns each key's label before."""
    before = current(conn, model_name, keys)
    with conn.cursor() as cur:
        execute_values(
            cur,
            "INSERT INTO labels (model_name, image_key, category, labelled_by, how, queue) VALUES %s",
            [(model_name, k, category, who, how, queue) for k in keys],
        )
        cur.execute("DELETE FROM label_leases WHERE model_name = %s AND image_key = ANY(%s)", (model_name, keys))
    return {k: before.get(k) for k in keys}


def history(conn: Conn, model_name: str, key: str) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT category, labelled_by, labelled_at, how, queue FROM labels
               WHERE model_name = %s AND image_key = %s ORDER BY id DESC""",
            (model_name, key),
        )
        return [{"category": c, "by": b, "at": t.isoformat(), "how": h, "queue": q} for c, b, t, h, q in cur.fetchall()]


def has_rows(conn: Conn, model_name: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM prediction_results WHERE model = %s)", (model_name,))
        return cur.fetchone()[0]


def claim(conn: Conn, model_name: str, source: str, queue: str, holder: str, n: int, lease_s: float) -> list[dict]:
    """Up to n images of the queue nobody holds, leased to `holder` for lease_s: without a
    current label for this project (never labelled, or taken back), classified by the `source`
    model (not removed). Images the holder already holds are not handed out again, so each
    call brings new ones.
    margin: smallest gap between the source's top two first; random: a uniform sample."""
    order = {"margin": MARGIN, "random": "random()"}[queue]
    with conn.cursor() as cur:
        cur.execute(
            f"""SELECT r.image_key, r.category, r.confidence, r.top_k, {MARGIN}
                FROM prediction_results r
                WHERE r.model = %(s)s AND r.deleted_at IS NULL
                  AND coalesce((SELECT l.category IS NOT NULL FROM labels l  -- its current label
                                WHERE l.model_name = %(m)s AND l.image_key = r.image_key
                                ORDER BY l.id DESC LIMIT 1), false) = false
                  AND NOT EXISTS (SELECT 1 FROM label_leases x WHERE x.model_name = %(m)s
                                  AND x.image_key = r.image_key AND x.until > now())
                ORDER BY {order} LIMIT %(n)s""",
            {"m": model_name, "s": source, "n": n * 2},
        )
        candidates = cur.fetchall()
        if not candidates:
            return []
        # taken only where nobody else's live lease is: one statement, row by row atomic
        cur.execute(
            """INSERT INTO label_leases (model_name, image_key, holder, until)
               SELECT %s, k, %s, now() + %s * interval '1 second' FROM unnest(%s::text[]) k
               ON CONFLICT (model_name, image_key) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
               WHERE label_leases.until <= now()
               RETURNING image_key""",
            (model_name, holder, lease_s, [c[0] for c in candidates]),
        )
        got = {row[0] for row in cur.fetchall()}
        kept = [c for c in candidates if c[0] in got][:n]
        extra = got - {c[0] for c in kept}  # asked for 2n in case of races: the rest go back
        if extra:
            cur.execute(
                "DELETE FROM label_leases WHERE model_name = %s AND image_key = ANY(%s)", (model_name, list(extra))
            )
    return [
        {"image_key": k, "category": c, "confidence": p, "top_k": t, "margin": round(m, 4)} for k, c, p, t, m in kept
    ]


def release(conn: Conn, model_name: str, holder: str, keys: Optional[list[str]] = None) -> None:
    with conn.cursor() as cur:
        cur.execute(
            """DELETE FROM label_leases
               WHERE model_name = %s AND holder = %s AND (%s::text[] IS NULL OR image_key = ANY(%s))""",
            (model_name, holder, keys, keys),
        )


def progress(conn: Conn, model_name: str) -> dict:
    """Current labels per category and per person, and today's (UTC) count."""
    with conn.cursor() as cur:
        cur.execute(
            """WITH cur AS (SELECT DISTINCT ON (image_key) image_key, category, labelled_by, labelled_at
                            FROM labels WHERE model_name = %s ORDER BY image_key, id DESC)
               SELECT category, labelled_by, count(*), count(*) FILTER (WHERE labelled_at >= date_trunc('day', now()))
               FROM cur WHERE category IS NOT NULL GROUP BY 1, 2""",
            (model_name,),
        )
        rows = cur.fetchall()
    per_category: dict[str, int] = {}
    per_person: dict[str, int] = {}
    for category, who, n, _ in rows:
        per_category[category] = per_category.get(category, 0) + n
        per_person[who] = per_person.get(who, 0) + n
    return {
        "labelled": sum(per_category.values()),
        "today": sum(r[3] for r in rows),
        "per_category": per_category,
        "per_person": per_person,
    }


def random_sample_agreement(conn: Conn, model_name: str) -> tuple[int, int]:
    """(images, agreeing): current labels given in the random queue, against the model's answer."""
    with conn.cursor() as cur:
        cur.execute(
            """WITH cur AS (SELECT DISTINCT ON (image_key) image_key, category, queue
                            FROM labels WHERE model_name = %s ORDER BY image_key, id DESC)
               SELECT count(*), count(*) FILTER (WHERE r.category = cur.category)
               FROM cur JOIN prediction_results r ON r.image_key = cur.image_key AND r.model = %s
               WHERE cur.queue = 'random' AND cur.category IS NOT NULL""",
            (model_name, model_name),
        )
        return cur.fetchone()


def labelled_rows(conn: Conn, model_name: str) -> list[tuple[str, str]]:
    """(image_key, category) of every current label: the export and `fit --from-labels`."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT image_key, category FROM (
                   SELECT DISTINCT ON (image_key) image_key, category FROM labels
                   WHERE model_name = %s ORDER BY image_key, id DESC) cur
               WHERE category IS NOT NULL ORDER BY image_key""",
            (model_name,),
        )
        return cur.fetchall()
