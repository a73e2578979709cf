"""A batch fed by S3 event notifications, against in-memory fakes: what is classified, what is
registered, refused, skipped and counted."""

import asyncio
import json

from consumer.fetch import Blob
from tests.consumer.test_batch_unit import jpeg, make
from tests.consumer.test_notifications_unit import aws, versitygw
from tests.fakes import ListSink, MemoryS3, messages


def note(*records) -> bytes:
    return json.dumps({"Records": list(records)}).encode()


def test_notifications_and_bare_keys_share_a_batch_and_are_counted_per_source():
    s3 = MemoryS3({"a b+c.jpg": Blob(jpeg(), '"e1"'), "plain.jpg": jpeg(), "x.jpg": jpeg()})
    sink = ListSink()
    proc, dead, _ = make(s3, sink, s3_bucket="images")
    test_event = json.dumps({"Bucket": "Test-Bucket", "Event": "s3:TestEvent", "Service": "S3"}).encode()
    msgs = messages(
        note(versitygw(key="a b+c.jpg"), versitygw("s3:ObjectRemoved:Delete", key="gone.jpg")),
        b"plain.jpg",
        test_event,
        note(versitygw(key="x.jpg", bucket="someone-elses")),
        b'{"hello": "world"}',
    )
    report = asyncio.run(proc.process_until_done(msgs))
    assert sorted(p.image_key for p in sink.predictions) == ["a b+c.jpg", "plain.jpg"]
    assert {p.image_key: p.etag for p in sink.predictions} == {"a b+c.jpg": "e1", "plain.jpg": None}
    assert s3.gets.count("x.jpg") == 0 and "gone.jpg" not in s3.gets  # no GET for either
    assert [(e.image_key, e.removed, e.etag) for e in sink.events] == [
        ("a b+c.jpg", False, "abc123"),
        ("gone.jpg", True, "abc123"),
    ]
    refused = {e.image_key: e.detail for e in sink.errors}
    assert "bucket not allowed" in refused["s3://someone-elses/x.jpg"]
    assert "neither a key nor an S3 event notification" in refused['{"hello": "world"}']
    assert dict(sink.arrivals) == {
        ("notification", "key"): 1,
        ("notification", "removed"): 1,
        ("notification", "skipped"): 1,
        ("notification", "refused"): 2,
        ("producer", "key"): 1,
    }
    assert report.classified == 2 and report.failed == 2 and len(dead.sent) == 2


def test_several_records_of_one_message_are_each_classified():
    s3 = MemoryS3({f"{i}.jpg": jpeg() for i in range(5)})
    sink = ListSink()
    proc, _, _ = make(s3, sink, s3_bucket="images")
    asyncio.run(proc.process_until_done(messages(note(*(aws(key=f"{i}.jpg") for i in range(5))))))
    assert sorted(p.image_key for p in sink.predictions) == [f"{i}.jpg" for i in range(5)]


def test_a_bug_records_internal_errors_under_the_events_keys_not_the_json():
    from tests.fakes import fixed_models

    s3 = MemoryS3({"k.jpg": jpeg()})
    sink = ListSink()
    proc, _, _ = make(s3, sink, models=fixed_models(fail_times=99), s3_bucket="images")
    asyncio.run(proc.process_until_done(messages(note(aws(key="k.jpg")))))
    assert [(e.image_key, str(e.error_type)) for e in sink.errors] == [("k.jpg", "internal")]
