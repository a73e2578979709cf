"""The least-privilege worker role, on the real PostgreSQL."""

import numpy as np
import psycopg2
import pytest

from db.embeddings import Embedding
from db.events import KeyEvent
from db.queries import ErrorRow, Prediction, iter_image_keys, register_images, write_batch
from db.roles import create_viewer_login, create_worker_login


@pytest.fixture
def worker_conn(db_conn, migrated):
    create_worker_login(db_conn, "worker_test", "s3cret")
    create_worker_login(db_conn, "worker_test", "s3cret-2")  # idempotent: updates the password
    conn = psycopg2.connect(
        host="127.0.0.1", port=migrated.pg_port, dbname="visionscaling", user="worker_test", password="s3cret-2"
    )
    yield conn
    conn.close()


def test_a_worker_can_do_its_job(db_conn, worker_conn):
    register_images(db_conn, [("a.jpg", 1), ("b.jpg", 1)])
    assert list(iter_image_keys(worker_conn)) == ["a.jpg", "b.jpg"]
    write_batch(worker_conn, [], [ErrorRow("a.jpg", "m", "corrupt", "x", "h")])
    write_batch(worker_conn, [Prediction("a.jpg", "m", "c", 0.5, 1, [], "h")])  # deletes the error row
    vector = Embedding("a.jpg", "trunk", np.full(512, 512**-0.5, dtype=np.float32))
    write_batch(worker_conn, [Prediction("a.jpg", "m", "c", 0.6, 1, [], "h")], vectors=[vector])
    write_batch(worker_conn, [Prediction("a.jpg", "m", "c", 0.6, 1, [], "h")], vectors=[vector])  # redelivered
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT deliveries FROM prediction_results")
        assert cur.fetchall() == [(3,)]
        cur.execute("SELECT count(*) FROM image_embeddings")
        assert cur.fetchall() == [(1,)]


def test_a_worker_registers_the_keys_notifications_bring_and_marks_removals(db_conn, worker_conn):
    created, removed = KeyEvent("live/n.jpg", "0001", "e1", 10), KeyEvent("live/n.jpg", "0002", removed=True)
    write_batch(worker_conn, [Prediction("live/n.jpg", "m", "c", 0.5, 1, [], "h", etag="e1")], events=[created])
    write_batch(worker_conn, [], events=[removed], arrivals={("notification", "removed"): 1})
    with db_conn, db_conn.cursor() as cur:
        cur.execute(
            "SELECT i.source, i.etag, r.deleted_at IS NOT NULL"
            " FROM image_info i JOIN prediction_results r USING (image_key)"
        )
        assert cur.fetchall() == [("notification", "e1", True)]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM image_info",
        "TRUNCATE image_info",
        "DELETE FROM prediction_count_deltas",
        "UPDATE prediction_counts SET n = 0",
        "DELETE FROM prediction_results",
        "DELETE FROM image_embeddings",
        "DROP TABLE prediction_errors",
        "CREATE TABLE evil (x int)",
    ],
)
def test_a_worker_can_do_nothing_else(worker_conn, statement):
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        with worker_conn, worker_conn.cursor() as cur:
            cur.execute(statement)


def test_login_names_are_quoted_not_interpolated(db_conn):
    create_worker_login(db_conn, 'x"; DROP TABLE image_info; --', "pw")
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", ('x"; DROP TABLE image_info; --',))
        assert cur.fetchone() == (1,)
        cur.execute("SELECT to_regclass('image_info') IS NOT NULL")
        assert cur.fetchone() == (True,)


@pytest.fixture
def viewer_conn(db_conn, migrated):
    create_viewer_login(db_conn, "viewer_test", "s3cret")
    conn = psycopg2.connect(
        host="127.0.0.1", port=migrated.pg_port, dbname="visionscaling", user="viewer_test", password="s3cret"
    )
    yield conn
    conn.close()


def test_a_viewer_reads_everything(db_conn, viewer_conn):
    register_images(db_conn, [("a.jpg", 1)])
    write_batch(db_conn, [Prediction("a.jpg", "m", "c", 0.5, 1, [], "h")])
    with viewer_conn, viewer_conn.cursor() as cur:
        cur.execute("""SELECT (SELECT count(*) FROM image_info), (SELECT count(*) FROM prediction_results),
                              (SELECT count(*) FROM prediction_errors)""")
        assert cur.fetchone() == (1, 1, 0)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO image_info (image_key) VALUES ('x')",
        "UPDATE prediction_results SET category = 'x'",
        "DELETE FROM prediction_errors",
    ],
)
def test_a_viewer_writes_nothing(viewer_conn, statement):
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        with viewer_conn, viewer_conn.cursor() as cur:
            cur.execute(statement)


def test_the_trainer_role_registers_and_promotes_versions_and_writes_nothing_else(db_conn, migrated):
    from db import registry
    from db.roles import TRAINER_ROLE, create_login

    create_login(db_conn, "trainer_test", "s3cret", TRAINER_ROLE)
    trainer = psycopg2.connect(
        host="127.0.0.1", port=migrated.pg_port, dbname="visionscaling", user="trainer_test", password="s3cret"
    )
    name = "trainer-role-test"
    try:
        with trainer, trainer.cursor() as cur:
            cur.execute("SELECT count(*) FROM image_embeddings, labels")  # what it learns from
            version = registry.next_version(cur, name)
            mv = registry.ModelVersion(
                name, version, "0" * 64, "s3://m/", "squeezenet1_1", ["a", "b"], {}, {}, "f" * 64
            )
            registry.insert(cur, mv)
        assert registry.set_stage(trainer, name, version, "production").stage == "production"
        for statement in (
            "INSERT INTO prediction_results (image_key, model, category, confidence, hostname)"
            " VALUES ('k', 'm', 'c', 1, 'h')",
            "DELETE FROM image_info",
            "UPDATE labels SET category = 'x'",
            "DELETE FROM models",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                with trainer, trainer.cursor() as cur:
                    cur.execute(statement)
    finally:
        trainer.close()
        with db_conn, db_conn.cursor() as cur:
            cur.execute("DELETE FROM models WHERE name = %s", (name,))
