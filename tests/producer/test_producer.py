"""The producer against the real Kafka and PostgreSQL of the test stack."""

import io
import uuid

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

import producer.__main__ as producer_cli
from common.kafka_admin import ensure_topic
from db.queries import ErrorRow, Prediction, register_images, write_batch


def consume_all(settings, expected: int, timeout: float = 30.0) -> list[tuple[int, bytes, bytes]]:
    consumer = Consumer(
        {
            **settings.kafka_client_config(),
            "group.id": f"t-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([settings.kafka_topic])
    out = []
    import time

    deadline = time.monotonic() + timeout
    while len(out) < expected and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            out.append((msg.partition(), msg.key(), msg.value()))
    # and nothing more arrives
    extra = consumer.poll(1.0)
    if extra is not None and not extra.error():
        out.append((extra.partition(), extra.key(), extra.value()))
    consumer.close()
    return out


def test_topic_is_created_with_the_configured_partitions(stack_settings):
    assert ensure_topic(stack_settings) == 3
    assert ensure_topic(stack_settings) == 3  # second call: exists, unchanged
    md = AdminClient(stack_settings.kafka_client_config()).list_topics(topic=stack_settings.kafka_topic, timeout=10)
    assert len(md.topics[stack_settings.kafka_topic].partitions) == 3


def test_create_topic_creates_it_and_sends_nothing(stack_settings, db_conn, capsys):
    register_images(db_conn, [("photos/0001.jpg", 1)])
    assert producer_cli.main(["--create-topic"]) == 0
    assert capsys.readouterr().out == f"topic {stack_settings.kafka_topic}: 3 partitions\n"
    assert consume_all(stack_settings, 1, timeout=3) == []


def test_create_topic_refuses_the_options_that_choose_what_to_send(capsys):
    with pytest.raises(SystemExit) as exc:
        producer_cli.main(["--create-topic", "--only-missing"])
    assert exc.value.code == 2
    assert "--create-topic sends nothing" in capsys.readouterr().err


def test_every_registered_key_is_sent_once_keyed_by_itself(stack_settings, db_conn, capsys):
    keys = [f"photos/{i:04d}.jpg" for i in range(300)]
    register_images(db_conn, [(k, 1) for k in keys])
    assert producer_cli.main([]) == 0
    assert "sent 300 of 300 keys" in capsys.readouterr().out
    got = consume_all(stack_settings, 300)
    assert sorted(v.decode() for _, _, v in got) == keys
    assert all(k == v for _, k, v in got)
    assert len({p for p, _, _ in got}) == 3  # spread over the partitions
    by_key = {}
    for p, k, _ in got:
        by_key.setdefault(k, set()).add(p)
    assert all(len(ps) == 1 for ps in by_key.values())


def test_only_missing_and_limit(stack_settings, db_conn, capsys):
    register_images(db_conn, [(k, 1) for k in ("a", "b", "c", "d", "e")])
    write_batch(
        db_conn,
        [Prediction("a", stack_settings.model_name, "x", 0.5, 1, [], "h")],
        [ErrorRow("b", stack_settings.model_name, "corrupt", "bad", "h")],
    )
    assert producer_cli.main(["--only-missing", "--limit", "2"]) == 0
    assert "sent 2 of 2 keys" in capsys.readouterr().out
    assert sorted(v for _, _, v in consume_all(stack_settings, 2)) == [b"c", b"d"]


def test_keys_from_stdin(stack_settings, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("one.jpg\r\ntwo words.png\n\nthree.jpg"))
    assert producer_cli.main(["--stdin"]) == 0
    assert "sent 3 of 3 keys" in capsys.readouterr().out
    assert sorted(v for _, _, v in consume_all(stack_settings, 3)) == [b"one.jpg", b"three.jpg", b"two words.png"]


def test_rate_limits_the_stream(stack_settings, monkeypatch, capsys):
    import time

    monkeypatch.setattr("sys.stdin", io.StringIO("".join(f"k{i}\n" for i in range(20))))
    started = time.monotonic()
    assert producer_cli.main(["--stdin", "--rate", "40"]) == 0
    assert time.monotonic() - started >= 0.45  # 20 keys at 40/s cannot take less than ~0.5 s


def test_undeliverable_keys_make_a_non_zero_exit(stack_settings, monkeypatch, capsys):
    ensure_topic(stack_settings)
    from producer.publish import KeyPublisher

    publisher = KeyPublisher(stack_settings, **{"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 1500})
    report = publisher.send_all(["lost-1", "lost-2"])
    assert report.delivered == 0 and report.failed == 2
    assert "failed 2" in report.summary(1.0)


def test_from_bucket_lists_registers_and_sends_only_what_has_no_current_row(stack_settings, db_conn, capsys):
    s3 = stack_settings.s3_client()
    s3.create_bucket(Bucket=stack_settings.s3_bucket)
    keys = [f"shelf/{i:04d}.jpg" for i in range(1, 2501)] + ["other/x.jpg"]  # over two listing pages
    for k in keys[:3] + keys[-1:]:
        s3.put_object(Bucket=stack_settings.s3_bucket, Key=k, Body=b"photo " + k.encode())
    for k in keys[3:-1]:  # the rest bodiless: only the listing matters here
        s3.put_object(Bucket=stack_settings.s3_bucket, Key=k, Body=b"")
    s3.put_object(Bucket=stack_settings.s3_bucket, Key="shelf/new folder/", Body=b"")  # a folder marker
    etag = s3.head_object(Bucket=stack_settings.s3_bucket, Key=keys[0])["ETag"].strip('"')
    model = stack_settings.model_name
    write_batch(
        db_conn,
        [
            Prediction(keys[0], model, "x", 0.5, 1, [], "h", etag=etag),  # current: not sent
            Prediction(keys[1], model, "x", 0.5, 1, [], "h", etag="an-older-etag"),  # overwritten since
        ],
        [ErrorRow(keys[2], model, "corrupt", "bad", "h")],  # has its row: not sent
    )
    assert producer_cli.main(["--from-bucket", "--only-missing", "--prefix", "shelf/"]) == 0
    assert "sent 2498 of 2498 keys" in capsys.readouterr().out
    sent = sorted(v.decode() for _, _, v in consume_all(stack_settings, 2498))
    assert sent == sorted([keys[1], *keys[3:-1]])
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT count(*), count(*) FILTER (WHERE source = 'listing' AND etag IS NOT NULL) FROM image_info")
        assert cur.fetchone() == (2500, 2500)  # registered as listed; other/ is outside the prefix


def test_from_bucket_on_a_missing_bucket_is_one_line(stack_settings, monkeypatch, capsys):
    monkeypatch.setenv("S3_BUCKET", "no-such-bucket-here")
    from settings import get_settings

    get_settings.cache_clear()
    assert producer_cli.run(["--from-bucket"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot list s3://no-such-bucket-here/") and "NoSuchBucket" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
