"""People's labels, their projects, and the queues that choose what to label (migration 0012).

A label is a row that is never updated: relabelling adds a row, so an image's history is its
rows and its current label is the newest (a NULL category is a label taken back). The queues
are db/label_queues.py's. Only SQL lives here; the rules are viewer/labelling.py's.
"""

from __future__ import annotations

from typing import Optional

import psycopg2.extensions
from psycopg2.extras import execute_values

Conn = psycopg2.extensions.connection


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
    """Label `keys` (one row each) and let go of `who`'s leases on them; returns each key's
    label before. An undo only replaces `who`'s own newest label: a label someone else gave
    since stays current (the key is left out of the answer)."""
    with conn.cursor() as cur:
        # one labeller at a time per image of the project: the newest row cannot change under us
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(k)) FROM unnest(%s::text[]) k ORDER BY k",
            (model_name, sorted(set(keys))),
        )
        before = current(conn, model_name, keys)
        if how == "undo":
            keys = [k for k in keys if _newest_by(cur, model_name, k) == who]
        if keys:
            execute_values(
                cur,
                "INSERT INTO labels (model_name, image_key, category, labelled_by, how, queue) VALUES %s",
                [(model_name, k, category, who, how, queue) for k in keys],
            )
            cur.execute(
                "DELETE FROM label_leases WHERE model_name = %s AND holder = %s AND image_key = ANY(%s)",
                (model_name, who, keys),
            )
    return {k: before.get(k) for k in keys}


def unknown(conn: Conn, keys: list[str]) -> list[str]:
    """The keys that are no registered image (image_info): nothing to label there."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT k FROM unnest(%s::text[]) k WHERE NOT EXISTS (SELECT 1 FROM image_info i WHERE i.image_key = k)",
            (keys,),
        )
        return [row[0] for row in cur.fetchall()]


def _newest_by(cur, model_name: str, key: str) -> Optional[str]:
    cur.execute(
        "SELECT labelled_by FROM labels WHERE model_name = %s AND image_key = %s ORDER BY id DESC LIMIT 1",
        (model_name, key),
    )
    row = cur.fetchone()
    return row[0] if row else None


def history(conn: Conn, model_name: str, key: str) -> list[dict]:
    with conn.cursor() as cur:
        cur.execute(
            """SELECT category, labelled_by, labelled_at, how, queue FROM labels
               WHERE model_name = %s AND image_key = %s ORDER BY id DESC""",
            (model_name, key),
        )
        return [{"category": c, "by": b, "at": t.isoformat(), "how": h, "queue": q} for c, b, t, h, q in cur.fetchall()]


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


def recent(conn: Conn, model_name: str, limit: int = 100) -> list[dict]:
    """The newest labels of the project, whoever gave them (the admins' view of who did what)."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT image_key, category, labelled_by, labelled_at, how, queue FROM labels
               WHERE model_name = %s ORDER BY id DESC LIMIT %s""",
            (model_name, limit),
        )
        return [
            {"image_key": k, "category": c, "by": b, "at": t.isoformat(), "how": h, "queue": q}
            for k, c, b, t, h, q in cur.fetchall()
        ]


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


def accuracy_on_labels(conn: Conn, model_name: str, versions: dict[str, int]) -> dict[str, dict]:
    """For each of {"production": N, "shadow": M}: on the labelled images it classified, how
    many it got right (its answer equals the current label)."""
    out = {}
    for role, version in versions.items():
        table, column = (
            ("prediction_results", "model_version") if role == "production" else ("shadow_predictions", "version")
        )
        with conn.cursor() as cur:
            cur.execute(
                f"""WITH cur AS (SELECT DISTINCT ON (image_key) image_key, category FROM labels
                                 WHERE model_name = %(n)s ORDER BY image_key, id DESC)
                    SELECT count(*), count(*) FILTER (WHERE p.category = cur.category)
                    FROM cur JOIN {table} p ON p.image_key = cur.image_key AND p.model = %(n)s AND p.{column} = %(v)s
                    WHERE cur.category IS NOT NULL""",
                {"n": model_name, "v": version},
            )
            images, right = cur.fetchone()
        out[role] = {
            "version": version,
            "images": images,
            "correct": right,
            "accuracy": right / images if images else None,
        }
    return out
