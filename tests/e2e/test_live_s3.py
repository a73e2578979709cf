"""Live from S3: photos put into the bucket reach the workers as the S3 server's own event
notifications (versitygw publishing to Kafka), with no producer and no image_info rows."""

from __future__ import annotations

import json
import sys
import time

import pytest
from confluent_kafka import Producer

from infra import kafka, versitygw
from infra.fleet import fleet_env, run
from infra.process import free_port
from tests.e2e.streams import report

PHOTOS = 200


def odd_key(i: int) -> str:
    """Nested prefixes, and names with a space, a literal + and %41, #, non-ASCII."""
    name = [f"a b {i}.jpg", f"plus+{i}.jpg", f"pct%41-{i}.jpg", f"hash#{i}.jpg", f"ünïcødé-{i}.jpg", f"{i}.jpg"][i % 6]
    return f"live/{i % 5}/{i % 3}/{name}"


# 900 bytes in segments under 255 bytes: a filesystem-backed S3 server stores each segment as
# a file or directory name, which the filesystem limits to 255 bytes
LONG_KEY = "live/" + "/".join(c * 221 for c in "wxyz") + "/long-0.jpg"


@pytest.fixture
def gateway(stack, stack_settings, tmp_path):
    """A versitygw of the test's own, publishing to the test's topic (the stack's publishes
    nowhere): the same credentials, a directory and port of its own."""
    gw = versitygw.Gateway(tmp_path / "versitygw", free_port(), events_topic=stack_settings.kafka_topic)
    versitygw.start_gateway(stack, gw)
    yield gw
    versitygw.stop_gateway(gw)


def rows(conn) -> dict[str, tuple]:
    """key -> (category, etag, deleted_at, deliveries, time)"""
    with conn, conn.cursor() as cur:
        cur.execute("SELECT image_key, category, etag, deleted_at, deliveries, time FROM prediction_results")
        return {r[0]: r[1:] for r in cur.fetchall()}


def live_fleet(e2e, stack, stack_settings, stack_env, gateway):
    """Two workers reading the gateway's bucket and topic; (settings, env, S3 client, fleet)."""
    endpoint = f"http://{stack.host}:{gateway.port}"
    settings = stack_settings.model_copy(update={"s3_endpoint_url": endpoint})
    env = {**fleet_env(settings, stack_env), "S3_ENDPOINT_URL": endpoint}
    s3 = settings.s3_client()
    s3.create_bucket(Bucket=settings.s3_bucket)
    return settings, env, s3, e2e.fleet(settings, env, "live", workers=2)


def test_photos_put_into_the_bucket_are_classified_exactly_once_with_no_producer(
    e2e, stack, stack_settings, stack_env, db_conn, dev_images, gateway
):
    settings, env, s3, fleet = live_fleet(e2e, stack, stack_settings, stack_env, gateway)

    photos = sorted(dev_images.glob("*.JPEG"))
    keys = [odd_key(i) for i in range(PHOTOS - 1)] + [LONG_KEY]
    assert len(LONG_KEY.encode()) >= 900 and all(len(p.encode()) < 255 for p in LONG_KEY.split("/"))
    put_at = {}
    for key, photo in zip(keys, photos):
        s3.upload_file(str(photo), settings.s3_bucket, key)
        put_at[key] = time.time()
    fleet.wait_for(f"{PHOTOS} rows", lambda: len(rows(db_conn)) >= PHOTOS, 300)

    got = rows(db_conn)
    assert set(got) == set(keys), sorted(set(keys) ^ set(got))[:5]
    assert all(r[2] is None for r in got.values())  # none marked deleted
    etags = {k: s3.head_object(Bucket=settings.s3_bucket, Key=k)["ETag"].strip('"') for k in keys[:12]}
    assert {k: got[k][1] for k in etags} == etags  # the row says which object it classified
    latency = sorted(got[k][4].timestamp() - put_at[k] for k in keys)
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE source = 'notification') FROM image_info")
        assert cur.fetchone() == (PHOTOS, PHOTOS)  # registered with their rows, no upload.py
        cur.execute("SELECT count(*) FROM prediction_errors")
        assert cur.fetchone()[0] == 0

    # an overwrite with another photo: classified again, the row says the new eTag
    first = keys[0]
    s3.upload_file(str(photos[PHOTOS]), settings.s3_bucket, first)
    new_etag = s3.head_object(Bucket=settings.s3_bucket, Key=first)["ETag"].strip('"')
    fleet.wait_for("the overwritten object's row", lambda: rows(db_conn)[first][1] == new_etag, 60)
    # a removal: the row stays, marked deleted, with no GET
    s3.delete_object(Bucket=settings.s3_bucket, Key=keys[1])
    fleet.wait_for("the removed object's row marked", lambda: rows(db_conn)[keys[1]][2] is not None, 60)

    # a test event and junk on the topic: skipped and dead-lettered, the partitions go on
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
    producer.produce(settings.kafka_topic, json.dumps({"Event": "s3:TestEvent", "Bucket": "x"}).encode())
    for junk in (b'{"Records": "nope"}', b'{"hello": 1}', b'{"Records": [{"eventName": 7}]}', b"", b"\xff\xfe"):
        for partition in range(3):  # on every partition: none may be blocked by it
            producer.produce(settings.kafka_topic, junk, partition=partition)
    assert producer.flush(30) == 0
    after = "live/after-the-junk.jpg"
    s3.upload_file(str(photos[PHOTOS + 1]), settings.s3_bucket, after)
    fleet.wait_for("a photo put after the junk", lambda: after in rows(db_conn), 60)
    e2e.stop()

    final = rows(db_conn)
    assert len(final) == PHOTOS + 1 and set(final) == {*keys, after}  # every key exactly once
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT error_type, count(*) FROM prediction_errors GROUP BY 1")
        # one row per distinct junk JSON (3), per empty message (3: keyed by partition and
        # offset) and for the non-UTF-8 bytes (1)
        assert dict(cur.fetchall()) == {"bad_message": 7}
    report(
        "live-s3",
        {
            "photos": PHOTOS,
            "rows": len(final),
            "put_to_row_p50_s": round(latency[len(latency) // 2], 2),
            "put_to_row_p95_s": round(latency[int(len(latency) * 0.95)], 2),
            "put_to_row_max_s": round(latency[-1], 2),
        },
    )


def test_notifications_lost_in_outages_are_recovered_by_the_reconciliation(
    e2e, stack, stack_settings, stack_env, db_conn, dev_images, gateway
):
    settings, env, s3, fleet = live_fleet(e2e, stack, stack_settings, stack_env, gateway)
    photos = sorted(dev_images.glob("*.JPEG"))

    def put(prefix: str, offset: int) -> list[str]:
        keys = [f"{prefix}/{i:03d}.jpg" for i in range(50)]
        for i, key in enumerate(keys):
            s3.upload_file(str(photos[offset + i]), settings.s3_bucket, key)
        return keys

    def rows_of(keys) -> int:
        return len(set(keys) & set(rows(db_conn)))

    # 1. Kafka stopped while 50 photos are put (the gateway answers the PUTs at once and holds
    #    their events in memory, retrying), then back
    kafka.stop(stack)
    down = time.monotonic()
    first = put("outage/kafka", 0)
    kafka.start(stack)
    kafka_outage_s = time.monotonic() - down
    _wait_quietly(lambda: rows_of(first) == 50, 90)
    by_notification_1 = rows_of(first)

    # 2. Kafka stopped, 50 more put, then the gateway crashes with their events pending; it can
    #    start again only once Kafka is back (it exits at start without Kafka)
    kafka.stop(stack)
    second = put("outage/crash", 50)
    versitygw.stop_gateway(gateway, hard=True)
    kafka.start(stack)
    versitygw.start_gateway(stack, gateway)
    _wait_quietly(lambda: rows_of(second) == 50, 20)
    by_notification_2 = rows_of(second)
    assert by_notification_2 < 50, "the crash lost no event: nothing left to recover"

    # 3. the reconciliation sends exactly what has no row, and every key ends with one
    lost = 100 - by_notification_1 - by_notification_2
    out = run([sys.executable, "-m", "producer", "--from-bucket", "--only-missing"], env).stdout
    assert f"sent {lost} of {lost} keys" in out, out
    fleet.wait_for("every key's row", lambda: rows_of(first + second) == 100, 120)
    e2e.stop()
    assert set(rows(db_conn)) == {*first, *second}  # one row per key (the primary key), none else
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM prediction_errors")
        assert cur.fetchone()[0] == 0
    report(
        "live-s3-outages",
        {
            "kafka_outage_s": round(kafka_outage_s, 1),
            "delivered_after_kafka_returned": by_notification_1,
            "delivered_after_the_gateway_crashed": by_notification_2,
            "recovered_by_reconciliation": lost,
            "keys": 100,
            "rows": 100,
            "missing": 0,
            "duplicates": 0,
        },
    )


def _wait_quietly(check, timeout: float) -> None:
    """Wait for `check` up to `timeout`; not reaching it is a finding here, not a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not check():
        time.sleep(1)
