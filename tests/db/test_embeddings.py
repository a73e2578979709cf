"""Embeddings on the real PostgreSQL: written with their image's rows and only then, one per key
whatever the redeliveries, left out with a stale event's rows, marked by a removal, and read
back by a reader that catches up without missing a transaction that was open when it read."""

from dataclasses import replace

import numpy as np
import psycopg2
import pytest

from db import embeddings
from db.embeddings import Embedding
from db.events import KeyEvent
from db.queries import ErrorRow, write_batch
from tests.db.test_queries import pred, rows

TRUNK = "squeezenet1_1:test"


def unit(seed: int) -> np.ndarray:
    v = np.abs(np.random.default_rng(seed).standard_normal(512)).astype(np.float32)
    return v / np.linalg.norm(v)


def emb(key: str, seed: int, etag=None) -> Embedding:
    return Embedding(key, TRUNK, unit(seed), etag)


def read_all(conn, since=None):
    pages, total, xmin = embeddings.changes(conn, TRUNK, since, page=2)
    got = {}
    for page in pages:
        for key, vector, removed in zip(page.keys, page.vectors, page.removed):
            got[key] = (vector, removed)
    assert total == len(got)
    return got, xmin


def test_an_embedding_is_written_with_its_rows_once_per_key(db_conn):
    write_batch(db_conn, [pred("a.jpg"), pred("b.jpg")], vectors=[emb("a.jpg", 1, "e1"), emb("b.jpg", 2)])
    write_batch(db_conn, [pred("a.jpg")], vectors=[emb("a.jpg", 3, "e2")])  # a redelivery, a new object
    got, _ = read_all(db_conn)
    assert sorted(got) == ["a.jpg", "b.jpg"]
    np.testing.assert_allclose(got["a.jpg"][0], unit(3), atol=1e-3)  # float16: ~3 decimal digits
    np.testing.assert_allclose(got["b.jpg"][0], unit(2), atol=1e-3)
    assert rows(db_conn, "SELECT etag, octet_length(vector) FROM image_embeddings WHERE image_key = 'a.jpg'") == [
        ("e2", 1024)
    ]


def test_no_embedding_without_a_result_row(db_conn):
    write_batch(db_conn, [], [ErrorRow("bad.jpg", "squeezenet1_1", "corrupt", "x", "h")], vectors=[emb("bad.jpg", 1)])
    assert rows(db_conn, "SELECT count(*) FROM image_embeddings") == [(0,)]


def test_a_stale_events_embedding_is_left_out_and_a_removal_marks_it(db_conn):
    first = [KeyEvent("live/x.jpg", "0002", "new")]
    write_batch(db_conn, [pred("live/x.jpg")], events=first, vectors=[emb("live/x.jpg", 1)])
    stale = write_batch(
        db_conn, [pred("live/x.jpg")], events=[KeyEvent("live/x.jpg", "0001", "old")], vectors=[emb("live/x.jpg", 9)]
    )
    assert stale == 1
    got, xmin = read_all(db_conn)
    np.testing.assert_allclose(got["live/x.jpg"][0], unit(1), atol=1e-3)
    write_batch(db_conn, [], events=[KeyEvent("live/x.jpg", "0003", None, removed=True)])
    changed, _ = read_all(db_conn, xmin)
    assert changed["live/x.jpg"][1] is True  # the reader learns of the removal


def test_a_key_stored_in_its_bounded_form_has_its_embedding_under_that_form(db_conn):
    long_key = "k/" + "é" * 600 + ".jpg"
    write_batch(db_conn, [pred(long_key)], vectors=[emb(long_key, 4)])
    (stored,) = rows(db_conn, "SELECT image_key FROM prediction_results")
    assert rows(db_conn, "SELECT image_key FROM image_embeddings") == [stored]


def test_catching_up_sees_a_transaction_that_was_open_during_the_last_read(db_conn, stack_settings):
    write_batch(db_conn, [pred("first.jpg")], vectors=[emb("first.jpg", 1)])
    slow = psycopg2.connect(stack_settings.database_url)
    try:
        with slow.cursor() as cur:  # begun, written, not committed while the reader reads
            embeddings.upsert(cur, [emb("slow.jpg", 2)])
        got, xmin = read_all(db_conn)
        assert sorted(got) == ["first.jpg"]
        write_batch(db_conn, [pred("later.jpg")], vectors=[emb("later.jpg", 3)])
        slow.commit()
        changed, xmin2 = read_all(db_conn, xmin)
        assert {"slow.jpg", "later.jpg"} <= set(changed) and "first.jpg" not in changed
        assert read_all(db_conn, xmin2)[0] == {}
    finally:
        slow.close()


def test_only_the_asked_trunks_vectors_are_read(db_conn):
    write_batch(db_conn, [pred("a.jpg")], vectors=[replace(emb("a.jpg", 1), trunk="other:trunk")])
    assert read_all(db_conn)[0] == {}
    assert embeddings.vectors_of(db_conn, ["a.jpg"], "other:trunk").keys() == {"a.jpg"}


@pytest.mark.parametrize("bad", [np.zeros(511, np.float32), np.zeros((2, 512), np.float32)])
def test_a_vector_of_the_wrong_shape_is_refused_before_the_database(bad):
    with pytest.raises(ValueError):
        embeddings.encode(bad)


def test_a_row_postgresql_refuses_takes_its_embedding_with_it_and_its_neighbour_keeps_both(db_conn, stack_settings):
    """The one-by-one path of consumer/sink.py: the refused row becomes an error row, and no
    embedding is left without a result row."""
    from consumer.messages import Message
    from consumer.sink import RowWriter
    from db.connection import connect

    good, bad = pred("ok.jpg"), replace(pred("bad.jpg"), confidence=2.0)  # CHECK (confidence <= 1)
    writer = RowWriter(lambda: connect(stack_settings))
    try:
        m1, m2 = Message(b"ok.jpg", 0, 1, None), Message(b"bad.jpg", 0, 2, None)
        refused = writer.write([(m1, good), (m2, bad)], [], vectors=[emb("ok.jpg", 1), emb("bad.jpg", 2)])
    finally:
        writer.close()
    assert [e.image_key for _, e in refused] == ["bad.jpg"]
    assert rows(db_conn, "SELECT image_key FROM image_embeddings ORDER BY 1") == [("ok.jpg",)]
    assert rows(db_conn, "SELECT image_key FROM prediction_results ORDER BY 1") == [("ok.jpg",)]
    assert rows(db_conn, "SELECT image_key, error_type FROM prediction_errors") == [("bad.jpg", "internal")]
