"""The running totals (migration 0006) agree with whole-table aggregates after every kind of
write the pipeline does, including concurrent writers, on the real PostgreSQL."""

import random
import threading
from datetime import datetime, timedelta, timezone

import psycopg2

from db import counts
from db.queries import ErrorRow, Prediction, progress, register_images, write_batch

_EXACT = """
SELECT 'result', model, hostname, category, count(*) FROM prediction_results GROUP BY 2, 3, 4
UNION ALL SELECT 'error', model, hostname, error_type, count(*) FROM prediction_errors GROUP BY 2, 3, 4
UNION ALL SELECT 'registered', '', '', '', count(*) FROM image_info HAVING count(*) > 0
UNION ALL SELECT 'done', r.model, '', 'result', count(*)
          FROM prediction_results r JOIN image_info USING (image_key) GROUP BY 2
UNION ALL SELECT 'done', e.model, '', 'error', count(*)
          FROM prediction_errors e JOIN image_info USING (image_key) GROUP BY 2
"""


def exact(conn) -> set:
    with conn, conn.cursor() as cur:
        cur.execute(_EXACT)
        return {(o, m, h, label, n) for o, m, h, label, n in cur.fetchall() if n}


def running(conn, models=("m1", "m2")) -> set:
    with conn:
        out = set()
        for model in models:
            for outcome, host, label, n in counts.summed(conn, model):
                if outcome == "arrival":  # counted as keys arrive (db.events), not derived from the tables
                    continue
                out.add((outcome, "" if outcome == "registered" else model, host, label, n))
        return out


def pred(key, model="m1", host="h1", category="cat", version=0):
    return Prediction(key, model, category, 0.5, 1, [], host, 1.0, datetime.now(timezone.utc), version)


def err(key, model="m1", host="h1", kind="corrupt"):
    return ErrorRow(key, model, kind, "x", host)


def test_every_write_path_keeps_the_totals_exact(db_conn):
    register_images(db_conn, [(f"k{i}", 1) for i in range(40)])
    write_batch(db_conn, [pred(f"k{i}") for i in range(10)], [err(f"k{i}") for i in range(10, 15)])
    assert running(db_conn) == exact(db_conn)
    # redelivery to another host, a newer version changing the category, errors cleared by results
    write_batch(db_conn, [pred(f"k{i}", host="h2") for i in range(5)])
    write_batch(db_conn, [pred(f"k{i}", category="other", version=2) for i in range(3, 8)])
    write_batch(db_conn, [pred(f"k{i}") for i in range(12, 15)], [err(f"k{i}", kind="missing") for i in range(10, 12)])
    # an error never replaces a result; a second model; keys that were never registered
    write_batch(db_conn, [], [err("k1"), err("k2", model="m2"), err("not-registered")])
    write_batch(db_conn, [pred("also-not-registered", model="m2")])
    assert running(db_conn) == exact(db_conn)
    # registering a key that already has rows makes them "done"; removing keys takes them back
    register_images(db_conn, [("not-registered", 1), ("also-not-registered", 1)])
    with db_conn, db_conn.cursor() as cur:
        cur.execute("DELETE FROM image_info WHERE image_key IN ('k0', 'k11', 'k39')")
        cur.execute("UPDATE image_info SET size_bytes = 2 WHERE image_key = 'k1'")
        cur.execute("DELETE FROM prediction_results WHERE image_key = 'k2'")
    assert running(db_conn) == exact(db_conn)
    stats = progress(db_conn, "m1")
    with db_conn, db_conn.cursor() as cur:
        cur.execute(
            """SELECT count(*) FROM image_info i WHERE NOT EXISTS (
                   SELECT 1 FROM prediction_results r WHERE r.image_key = i.image_key AND r.model = 'm1')
               AND NOT EXISTS (SELECT 1 FROM prediction_errors e WHERE e.image_key = i.image_key AND e.model = 'm1')"""
        )
        assert stats["keys_without_row"] == cur.fetchone()[0] > 0
    with db_conn, db_conn.cursor() as cur:
        cur.execute("TRUNCATE prediction_errors")
    assert running(db_conn) == exact(db_conn)
    with db_conn, db_conn.cursor() as cur:
        cur.execute("TRUNCATE image_info")
    assert running(db_conn) == exact(db_conn)


def test_deltas_are_folded_and_a_recount_changes_nothing(db_conn):
    register_images(db_conn, [(f"k{i}", 1) for i in range(100)])
    for i in range(0, 100, 10):
        write_batch(db_conn, [pred(f"k{j}", host=f"h{i % 3}") for j in range(i, i + 10)])
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM prediction_count_deltas")
        assert cur.fetchone()[0] == 0  # a lone writer always gets the fold lock
    before = running(db_conn)
    counts.recount(db_conn)
    assert running(db_conn) == before == exact(db_conn)


def test_concurrent_writers_keep_the_totals_exact(db_conn, stack_settings):
    """Four writers on overlapping keys and hosts (a rebalance's redeliveries), each holding its
    transaction open a little so that folds overlap; then the totals must still be exact."""
    keys = [f"k{i}" for i in range(400)]
    register_images(db_conn, [(k, 1) for k in keys])
    failures = []

    def writer(n: int) -> None:
        rng = random.Random(n)
        conn = psycopg2.connect(stack_settings.database_url)
        try:
            for _ in range(25):
                batch = rng.sample(keys, 16)
                preds = [pred(k, host=f"h{n}", category=rng.choice("abc")) for k in batch[:12]]
                errs = [err(k, host=f"h{n}", kind=rng.choice(["corrupt", "missing"])) for k in batch[12:]]
                write_batch(conn, preds, errs)
        except Exception as exc:  # reported below: a deadlock here is the failure this test looks for
            failures.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures
    assert running(db_conn) == exact(db_conn)


def test_the_viewer_role_can_read_the_totals(db_conn, migrated):
    from db.roles import create_viewer_login

    create_viewer_login(db_conn, "viewer_counts", "pw")
    write_batch(db_conn, [pred("k1")])
    conn = psycopg2.connect(
        host="127.0.0.1", port=migrated.pg_port, dbname="visionscaling", user="viewer_counts", password="pw"
    )
    try:
        conn.set_session(readonly=True)
        assert counts.count_results(conn, "m1") == 1
        assert progress(conn, "m1")["hosts"] == [{"hostname": "h1", "last_minute": 1, "total": 1}]
    finally:
        conn.close()


def test_last_minute_counts_only_recent_rows(db_conn):
    old = datetime.now(timezone.utc) - timedelta(minutes=5)
    write_batch(db_conn, [Prediction("old", "m1", "c", 0.5, 1, [], "h1", 1.0, old), pred("new")])
    assert progress(db_conn, "m1")["hosts"] == [{"hostname": "h1", "last_minute": 1, "total": 2}]
