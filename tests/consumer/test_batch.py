"""BatchProcessor on the real S3 and PostgreSQL of the test stack (no Kafka needed)."""

import asyncio

import pytest

from consumer.batch import BatchProcessor, Message, TransientError
from consumer.fetch import S3Images
from consumer.serving import load_model_set
from consumer.sink import RowWriter
from db.connection import connect
from tests.consumer import images_zoo as zoo
from upload import ensure_bucket


@pytest.fixture(scope="module")
def classifier(weights_path):
    from settings import Settings

    return load_model_set(Settings(_env_file=None, model_weights=weights_path, torch_threads=2))[0]


@pytest.fixture
def bucket(stack_settings):
    s3 = stack_settings.s3_client()
    ensure_bucket(s3, stack_settings.s3_bucket)
    return s3


def results(conn):
    with conn, conn.cursor() as cur:
        cur.execute("SELECT image_key, category, hostname, jsonb_array_length(top_k) FROM prediction_results")
        ok = {r[0]: r[1:] for r in cur.fetchall()}
        cur.execute("SELECT image_key, error_type FROM prediction_errors")
        return ok, dict(cur.fetchall())


def test_a_mixed_batch_gives_one_row_per_message(stack_settings, db_conn, bucket, classifier, dev_images):
    photos = sorted(dev_images.glob("*.JPEG"))[:3]
    for p in photos:
        bucket.put_object(Bucket=stack_settings.s3_bucket, Key=p.name, Body=p.read_bytes())
    bucket.put_object(Bucket=stack_settings.s3_bucket, Key="corrupt.jpg", Body=zoo.truncated_jpeg())
    bucket.put_object(Bucket=stack_settings.s3_bucket, Key="cmyk.jpg", Body=zoo.cmyk_jpeg())
    keys = [p.name for p in photos] + ["corrupt.jpg", "cmyk.jpg", "never-uploaded.jpg"]
    messages = [Message(k.encode(), 0, i, 1.7e9) for i, k in enumerate(keys)]
    messages += [Message(b"", 1, 7), Message(b"\xff\xfebad", 1, 8)]

    dead = []

    async def sink(failures):
        dead.extend((m.offset, e.error_type) for m, e in failures)

    proc = BatchProcessor(
        stack_settings,
        classifier,
        S3Images.from_settings(stack_settings),
        RowWriter(lambda: connect(stack_settings)),
        dead_letter=sink,
    )
    report = asyncio.run(proc.process(messages))
    assert (report.size, report.classified, report.failed) == (8, 4, 4)
    ok, errors = results(db_conn)
    assert set(ok) == {p.name for p in photos} | {"cmyk.jpg"}
    assert all(host == stack_settings.hostname and k == 5 for _, host, k in ok.values())
    assert errors == {
        "corrupt.jpg": "corrupt",
        "never-uploaded.jpg": "missing",
        "<empty message p1@7>": "bad_message",
        "\\xff\\xfebad": "bad_message",
    }
    assert sorted(dead) == [(3, "corrupt"), (5, "missing"), (7, "bad_message"), (8, "bad_message")]

    asyncio.run(proc.process(messages))  # redelivery: same rows, no duplicates
    assert results(db_conn) == (ok, errors)
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT min(deliveries), max(deliveries) FROM prediction_results")
        assert cur.fetchone() == (2, 2)
    proc.close()


def test_an_unreachable_database_is_transient_not_a_crash(stack_settings, bucket, classifier, dev_images):
    photo = sorted(dev_images.glob("*.JPEG"))[0]
    bucket.put_object(Bucket=stack_settings.s3_bucket, Key=photo.name, Body=photo.read_bytes())
    dead = stack_settings.model_copy(update={"database_url": "postgresql://postgres@127.0.0.1:1/none"})
    proc = BatchProcessor(dead, classifier, S3Images.from_settings(dead), RowWriter(lambda: connect(dead)))
    with pytest.raises(TransientError, match="PostgreSQL unavailable"):
        asyncio.run(proc.process([Message(photo.name.encode())]))
    proc.close()


def test_an_unreachable_s3_is_transient(stack_settings, classifier):
    dead = stack_settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:1"})
    proc = BatchProcessor(dead, classifier, S3Images.from_settings(dead), RowWriter(lambda: connect(stack_settings)))
    with pytest.raises(TransientError, match="S3"):
        asyncio.run(proc.process([Message(b"a.jpg")]))
    proc.close()


def test_chunked_inference_gives_the_same_rows_as_one_model_call(
    stack_settings, db_conn, bucket, classifier, dev_images
):
    photos = sorted(dev_images.glob("*.JPEG"))[:20]
    for p in photos:
        bucket.put_object(Bucket=stack_settings.s3_bucket, Key=p.name, Body=p.read_bytes())
    bucket.put_object(Bucket=stack_settings.s3_bucket, Key="corrupt.jpg", Body=zoo.truncated_jpeg())
    messages = [
        Message(k.encode(), 0, i)
        for i, k in enumerate([p.name for p in photos[:7]] + ["corrupt.jpg"] + [p.name for p in photos[7:]])
    ]
    rows = {}
    for chunk in (1, 3, 64):
        proc = BatchProcessor(
            stack_settings.model_copy(update={"infer_chunk_size": chunk}),
            classifier,
            S3Images.from_settings(stack_settings),
            RowWriter(lambda: connect(stack_settings)),
        )
        report = asyncio.run(proc.process(messages))
        proc.close()
        assert (report.classified, report.failed, report.error_types) == (20, 1, ["corrupt"])
        assert report.seconds["infer"] > 0 and report.seconds["batch"] >= report.seconds["download"]
        with db_conn, db_conn.cursor() as cur:
            cur.execute("SELECT image_key, class_index, top_k FROM prediction_results ORDER BY 1")
            rows[chunk] = cur.fetchall()
            cur.execute("TRUNCATE prediction_results, prediction_errors")
    assert len(rows[1]) == 20
    assert [r[:2] for r in rows[1]] == [r[:2] for r in rows[3]] == [r[:2] for r in rows[64]]
    for a, b in zip(rows[1], rows[64]):
        assert [t["class_index"] for t in a[2]] == [t["class_index"] for t in b[2]]
