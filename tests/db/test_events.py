"""Keys that arrive by S3 notification, on the real PostgreSQL: registration with the row, the
order stamp that keeps an older answer from coming back, removals, arrival counts."""

from dataclasses import replace

from db.counts import recount
from db.events import KeyEvent, missing
from db.queries import ErrorRow, progress, write_batch
from tests.db.test_queries import pred, rows


def put(conn, key, stamp, etag, category="tabby", removed=False, with_row=True):
    event = KeyEvent(key, stamp, etag, 100, removed)
    row = [pred(key, category)] if with_row and not removed else []
    return write_batch(conn, [replace(r, etag=etag) for r in row], events=[event])


def state(conn, key):
    return rows(
        conn,
        """SELECT r.category, r.etag, r.deleted_at IS NOT NULL, i.etag, i.source, i.deleted_at IS NOT NULL
           FROM image_info i LEFT JOIN prediction_results r USING (image_key) WHERE i.image_key = %s""",
        (key,),
    )[0]


def test_a_notified_key_is_registered_with_its_row(db_conn):
    assert put(db_conn, "live/a.jpg", "0001", "e1") == 0
    assert state(db_conn, "live/a.jpg") == ("tabby", "e1", False, "e1", "notification", False)


def test_an_older_event_arriving_late_never_puts_the_older_answer_back(db_conn):
    put(db_conn, "live/b.jpg", "0002", "new", category="newer")
    assert put(db_conn, "live/b.jpg", "0001", "old", category="older") == 1  # stale
    assert state(db_conn, "live/b.jpg")[:2] == ("newer", "new")
    assert put(db_conn, "live/b.jpg", "0002", "new", category="newer") == 0  # a redelivery: absorbed
    assert rows(db_conn, "SELECT deliveries FROM prediction_results WHERE image_key = 'live/b.jpg'") == [(2,)]


def test_within_one_batch_the_newest_event_of_a_key_wins_and_a_removal_drops_the_row(db_conn):
    events = [KeyEvent("live/c.jpg", "0001", "e1"), KeyEvent("live/c.jpg", "0002", None, removed=True)]
    stale = write_batch(db_conn, [pred("live/c.jpg")], [ErrorRow("live/c.jpg", "m", "missing", "x", "h")], (), events)
    assert stale == 1
    assert rows(db_conn, "SELECT count(*) FROM prediction_results WHERE image_key = 'live/c.jpg'") == [(0,)]
    assert rows(db_conn, "SELECT count(*) FROM prediction_errors WHERE image_key = 'live/c.jpg'") == [(0,)]
    assert rows(db_conn, "SELECT deleted_at IS NOT NULL FROM image_info WHERE image_key = 'live/c.jpg'") == [(True,)]


def test_a_removal_marks_the_rows_deleted_and_a_new_put_brings_them_back(db_conn):
    put(db_conn, "live/d.jpg", "0001", "e1")
    put(db_conn, "live/d.jpg", "0002", None, removed=True)
    assert state(db_conn, "live/d.jpg")[2] is True and state(db_conn, "live/d.jpg")[5] is True
    put(db_conn, "live/d.jpg", "0003", "e3", category="again")
    assert state(db_conn, "live/d.jpg") == ("again", "e3", False, "e3", "notification", False)


def test_events_without_a_stamp_always_apply_and_keep_the_stored_stamp(db_conn):
    put(db_conn, "live/e.jpg", "0005", "e5")
    put(db_conn, "live/e.jpg", "", "e6", category="unordered")
    assert state(db_conn, "live/e.jpg")[:2] == ("unordered", "e6")
    assert rows(db_conn, "SELECT event_stamp FROM image_info WHERE image_key = 'live/e.jpg'") == [("0005",)]


def test_arrivals_are_counted_per_source_and_survive_a_recount(db_conn):
    before = progress(db_conn, "squeezenet1_1")["arrivals"]
    write_batch(db_conn, [], arrivals={("notification", "key"): 3, ("producer", "key"): 2})
    put(db_conn, "live/f.jpg", "0002", "e2")
    put(db_conn, "live/f.jpg", "0001", "e1")  # stale: counted
    recount(db_conn)
    after = progress(db_conn, "squeezenet1_1")["arrivals"]

    def grew(source, kind):
        return after.get(source, {}).get(kind, 0) - before.get(source, {}).get(kind, 0)

    assert (grew("notification", "key"), grew("producer", "key"), grew("notification", "stale")) == (3, 2, 1)


def test_the_reconciliation_finds_keys_without_a_current_row(db_conn):
    put(db_conn, "live/g1.jpg", "0001", "same")  # classified, same eTag: not missing
    put(db_conn, "live/g2.jpg", "0001", "old")  # overwritten since (listed eTag differs)
    put(db_conn, "live/g3.jpg", "0001", "x")
    put(db_conn, "live/g3.jpg", "0002", None, removed=True)  # marked deleted, but listed again
    listed = [("live/g0.jpg", "e0"), ("live/g1.jpg", "same"), ("live/g2.jpg", "new"), ("live/g3.jpg", "x")]
    assert missing(db_conn, listed, "squeezenet1_1", 0) == ["live/g0.jpg", "live/g2.jpg", "live/g3.jpg"]
    assert missing(db_conn, listed, "squeezenet1_1", 1) == [k for k, _ in listed]  # no row of version >= 1
