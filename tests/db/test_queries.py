"""db/ on the real PostgreSQL of the test stack."""

import psycopg2
import pytest

from db.migrate import migrate
from db.queries import ErrorRow, Prediction, count_images, iter_image_keys, register_images, write_batch

NASTY_KEYS = [
    "it's.jpg",
    'say "cheese".png',
    "a;b;c.jpg",
    "'; DROP TABLE image_info; --.jpg",
    "<script>alert(1)</script>.jpg",
    "emoji-🐈‍⬛.webp",
    "k" * 1000 + ".jpg",
    "back\\slash.jpg",
]


def pred(key, category="tabby", conf=0.5, model="squeezenet1_1", host="h1"):
    return Prediction(
        key, model, category, conf, 281, [{"class_index": 281, "category": category, "confidence": conf}], host, 12.5
    )


def rows(conn, sql, params=()):
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def test_migrate_is_idempotent(db_conn):
    assert migrate(db_conn) == []
    tables = {r[0] for r in rows(db_conn, "SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert {"image_info", "prediction_results", "prediction_errors", "schema_migrations"} <= tables


def test_prediction_results_has_the_agreed_columns(db_conn):
    cols = {
        r[0]
        for r in rows(
            db_conn, "SELECT column_name FROM information_schema.columns WHERE table_name = 'prediction_results'"
        )
    }
    assert {
        "image_key",
        "category",
        "confidence",
        "hostname",
        "time",
        "class_index",
        "top_k",
        "model",
        "latency_ms",
    } <= cols


def test_register_images_keeps_existing_rows(db_conn):
    assert register_images(db_conn, [("a.jpg", 10), ("b.jpg", 20)]) == 2
    assert register_images(db_conn, [("a.jpg", 999), ("c.jpg", 30)]) == 1
    assert rows(db_conn, "SELECT image_key, size_bytes FROM image_info ORDER BY 1") == [
        ("a.jpg", 10),
        ("b.jpg", 20),
        ("c.jpg", 30),
    ]
    assert count_images(db_conn) == 3


def test_nasty_keys_are_stored_verbatim(db_conn):
    assert register_images(db_conn, [(k, 1) for k in NASTY_KEYS]) == len(NASTY_KEYS)
    write_batch(db_conn, [pred(k) for k in NASTY_KEYS])
    assert sorted(iter_image_keys(db_conn)) == sorted(NASTY_KEYS)
    assert {r[0] for r in rows(db_conn, "SELECT image_key FROM prediction_results")} == set(NASTY_KEYS)


def test_iter_image_keys_streams_in_order_with_limit(db_conn):
    keys = [f"img/{i:05d}.jpg" for i in range(12_000)]
    register_images(db_conn, [(k, None) for k in keys])
    assert list(iter_image_keys(db_conn, itersize=1000)) == keys
    assert list(iter_image_keys(db_conn, limit=3)) == keys[:3]


def test_missing_for_model_skips_keys_with_a_result_or_an_error(db_conn):
    register_images(db_conn, [(k, None) for k in ("a", "b", "c", "d")])
    write_batch(
        db_conn,
        [pred("a"), pred("c", model="squeezenet1_0")],
        [ErrorRow("b", "squeezenet1_1", "corrupt", "bad", "h1")],
    )
    assert list(iter_image_keys(db_conn, missing_for_model="squeezenet1_1")) == ["c", "d"]
    assert list(iter_image_keys(db_conn, missing_for_model="squeezenet1_0")) == ["a", "b", "d"]


def test_a_redelivered_batch_updates_rows_instead_of_duplicating(db_conn):
    write_batch(db_conn, [pred("x", conf=0.2), pred("y")])
    write_batch(db_conn, [pred("x", category="lynx", conf=0.9, host="h2")])
    assert rows(db_conn, "SELECT image_key, category, confidence, hostname FROM prediction_results ORDER BY 1") == [
        ("x", "lynx", pytest.approx(0.9), "h2"),
        ("y", "tabby", pytest.approx(0.5), "h1"),
    ]


def test_a_key_twice_in_one_batch_gives_one_row(db_conn):
    write_batch(
        db_conn,
        [pred("x", conf=0.1), pred("x", conf=0.3)],
        [
            ErrorRow("e", "squeezenet1_1", "corrupt", "1", "h"),
            ErrorRow("e", "squeezenet1_1", "corrupt", "2", "h"),
        ],
    )
    assert rows(db_conn, "SELECT count(*) FROM prediction_results") == [(1,)]
    assert rows(db_conn, "SELECT detail, attempts FROM prediction_errors") == [("2", 1)]


def test_a_key_ends_in_exactly_one_of_results_and_errors(db_conn):
    err = ErrorRow("k", "squeezenet1_1", "missing", "gone", "h1")
    write_batch(db_conn, [], [err])
    write_batch(db_conn, [], [err])
    assert rows(db_conn, "SELECT attempts FROM prediction_errors") == [(2,)]
    write_batch(db_conn, [pred("k")])  # classified on a later try: the error row goes
    assert rows(db_conn, "SELECT count(*) FROM prediction_errors") == [(0,)]
    write_batch(db_conn, [], [err])  # a late failure never shadows a result
    assert rows(db_conn, "SELECT count(*) FROM prediction_errors") == [(0,)]
    assert rows(db_conn, "SELECT count(*) FROM prediction_results") == [(1,)]


def test_a_failing_batch_writes_nothing(db_conn):
    bad = Prediction("z", "squeezenet1_1", "x", 1.5, 0, [], "h")  # violates the confidence check
    with pytest.raises(psycopg2.errors.CheckViolation):
        write_batch(db_conn, [pred("ok"), bad])
    assert rows(db_conn, "SELECT count(*) FROM prediction_results") == [(0,)]


def test_keys_beyond_the_index_limit_are_stored_bounded_and_distinct(db_conn):
    from common.keys import MAX_STORED_KEY_BYTES

    long_a, long_b = "a" * 3000 + "1.jpg", "a" * 3000 + "2.jpg"  # over btree's ~2.7 KB limit
    err = ErrorRow(long_b, "squeezenet1_1", "bad_key", "x", "h1")
    write_batch(db_conn, [pred(long_a)], [err])
    write_batch(db_conn, [pred(long_a)], [err])  # a redelivery lands on the same rows
    keys = rows(db_conn, "SELECT image_key FROM prediction_results UNION ALL SELECT image_key FROM prediction_errors")
    assert len(keys) == 2 and keys[0][0] != keys[1][0]
    assert all(len(k.encode()) <= MAX_STORED_KEY_BYTES for (k,) in keys)


def test_the_database_refuses_an_error_type_outside_the_vocabulary(db_conn):
    import psycopg2

    with pytest.raises(psycopg2.errors.CheckViolation):
        write_batch(db_conn, [], [ErrorRow("a.jpg", "squeezenet1_1", "oops", "x", "h1")])


def test_two_concurrent_writers_leave_a_key_in_exactly_one_table(db_conn, stack_settings):
    """During a rebalance two workers may write the same keys at once, one a result and the
    other an error. The result's transaction commits slowly; the error writer's "no result
    yet" check runs meanwhile (READ COMMITTED: it cannot see the uncommitted result)."""
    import threading
    import time

    import psycopg2.extensions

    from db.connection import connect

    class SlowCommit(psycopg2.extensions.connection):
        def commit(self):
            time.sleep(1.0)
            super().commit()

    keys = [f"race/{i}.jpg" for i in range(50)]
    slow, fast = connect(stack_settings, connection_factory=SlowCommit), connect(stack_settings)
    results = threading.Thread(target=write_batch, args=(slow, [pred(k) for k in keys]))
    results.start()
    time.sleep(0.3)  # the results are written, not yet committed
    write_batch(fast, [], [ErrorRow(k, "squeezenet1_1", "missing", "x", "h2") for k in keys])
    results.join()
    assert rows(db_conn, "SELECT count(*) FROM prediction_results") == [(50,)]
    assert rows(db_conn, "SELECT count(*) FROM prediction_errors") == [(0,)]
    slow.close()
    fast.close()


def test_iterating_keys_holds_no_transaction_open_between_pages(db_conn, stack_settings):
    from db.connection import connect

    register_images(db_conn, [(f"k{i:04d}", None) for i in range(25)])
    conn = connect(stack_settings)
    it = iter_image_keys(conn, itersize=10)
    first = [next(it) for _ in range(12)]  # into the second page, paused like a paced producer
    pid = conn.get_backend_pid()
    state = rows(db_conn, "SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,))
    assert state == [("idle",)]
    assert first + list(it) == [f"k{i:04d}" for i in range(25)]
    conn.close()


def test_only_missing_with_versions_resends_rows_of_older_versions(db_conn):
    from dataclasses import replace

    register_images(db_conn, [(k, 1) for k in ("a", "b", "c")])
    write_batch(
        db_conn, [replace(pred("a", model="mine"), model_version=1), replace(pred("b", model="mine"), model_version=2)]
    )
    assert list(iter_image_keys(db_conn, missing_for_model="mine", older_than_version=2)) == ["a", "c"]
    assert list(iter_image_keys(db_conn, missing_for_model="mine")) == ["c"]


def test_an_older_version_never_overwrites_a_newer_ones_row(db_conn):
    from dataclasses import replace

    write_batch(db_conn, [replace(pred("k", "v2-cat", model="mine"), model_version=2)])
    write_batch(db_conn, [replace(pred("k", "v1-cat", model="mine"), model_version=1)])  # a late v1 worker
    assert rows(db_conn, "SELECT category, model_version FROM prediction_results") == [("v2-cat", 2)]
    write_batch(db_conn, [replace(pred("k", "v3-cat", model="mine"), model_version=3)])
    assert rows(db_conn, "SELECT category, model_version FROM prediction_results") == [("v3-cat", 3)]
