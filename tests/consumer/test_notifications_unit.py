"""S3 event notifications in every form users meet, with the exact key encodings of each."""

import json

from common.errors import ImageError
from consumer.notifications import Notification, read_message

# the key every form below carries, each in its own encoding
KEY = "dir/red flower+%41 é.jpg"


def aws(name="ObjectCreated:Put", key="dir/red+flower%2B%2541+%C3%A9.jpg", bucket="images", **obj):
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-11-30T10:00:00.123Z",
        "eventName": name,
        "s3": {
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": key, "size": 1024, "eTag": "d41d8cd9", "sequencer": "0055AED6DCD90281E5", **obj},
        },
    }


def versitygw(name="s3:ObjectCreated:Put", key=KEY, bucket="images", sequencer="17", time="2026-11-30T10:00:00Z"):
    """As versitygw v1.8.0 sends it, its bucket ARN included ("arn:aws:s3:::/BUCKET/KEY")."""
    return {
        "eventVersion": "2.2",
        "eventSource": "aws:s3",
        "eventTime": time,
        "eventName": name,
        "s3": {
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::/{bucket}/{key}"},
            "object": {"key": key, "size": 7, "eTag": '"abc123"', "sequencer": sequencer},
        },
    }


def message(doc) -> bytes:
    return json.dumps(doc).encode()


def one_event(doc):
    reading = read_message(message(doc))
    assert isinstance(reading, Notification) and not reading.refused, reading
    (event,) = reading.events
    return event


def test_a_bare_key_is_still_a_key_even_when_it_looks_like_json_but_is_not():
    assert read_message("dir/ünïcode 🐈.jpg".encode()) == "dir/ünïcode 🐈.jpg"
    assert read_message(b"{draft}.jpg") == "{draft}.jpg"
    assert read_message(b"[1, 2].jpg") == "[1, 2].jpg"


def test_aws_keys_are_form_url_decoded_plus_is_a_space():
    event = one_event({"Records": [aws()]})
    assert event.key == KEY and event.form == "aws" and event.created
    assert (event.bucket, event.size, event.etag, event.name) == ("images", 1024, "d41d8cd9", "ObjectCreated:Put")


def test_versitygw_keys_arrive_raw_and_are_taken_as_they_are():
    event = one_event({"Records": [versitygw()]})
    assert event.key == KEY and event.form == "versitygw" and event.name == "ObjectCreated:Put"
    assert event.etag == "abc123"  # quotes removed


def test_minio_keys_are_query_unescaped_slash_included():
    doc = {
        "EventName": "s3:ObjectCreated:Put",
        "Key": "images/dir/red flower+%41 é.jpg",
        "Records": [
            {
                **versitygw(key="dir%2Fred+flower%2B%2541+%C3%A9.jpg"),
                "eventSource": "minio:s3",
            }
        ],
    }
    event = one_event(doc)
    assert event.key == KEY and event.form == "minio"


def test_eventbridge_keys_are_decoded_as_aws_ones():
    doc = {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "time": "2026-11-30T10:00:00Z",
        "detail": {
            "bucket": {"name": "images"},
            "object": {"key": "dir/red+flower%2B%2541+%C3%A9.jpg", "size": 5, "etag": "b19", "sequencer": "617f"},
            "reason": "PutObject",
        },
    }
    event = one_event(doc)
    assert (event.key, event.form, event.created, event.etag, event.size) == (KEY, "eventbridge", True, "b19", 5)
    deleted = one_event({**doc, "detail-type": "Object Deleted", "detail": {**doc["detail"], "reason": "DeleteObject"}})
    assert not deleted.created


def test_an_sns_envelope_is_opened():
    doc = {"Type": "Notification", "Message": json.dumps({"Records": [aws()]})}
    assert one_event(doc).key == KEY


def test_several_records_in_one_message_each_become_an_event():
    reading = read_message(message({"Records": [aws(key="a.jpg"), aws(key="b.jpg"), aws("ObjectRemoved:Delete")]}))
    assert [(e.key, e.created) for e in reading.events] == [("a.jpg", True), ("b.jpg", True), (KEY, False)]


def test_test_events_are_skipped_not_refused():
    for doc in (
        {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-30T10:00:00Z", "Bucket": "images"},
        {"Bucket": "Test-Bucket", "Event": "s3:TestEvent", "Service": "S3", "Time": "2026-11-30T10:00:00Z"},
    ):
        reading = read_message(message(doc))
        assert isinstance(reading, Notification)
        assert (reading.events, reading.skipped, reading.refused) == ([], 1, [])


def test_other_event_types_and_folder_markers_are_skipped():
    records = [aws("ObjectRestore:Completed"), aws("ObjectTagging:Put"), versitygw(key="new folder/")]
    reading = read_message(message({"Records": records}))
    assert (reading.events, reading.skipped, reading.refused) == ([], 3, [])


def test_removals_are_events_that_classify_nothing():
    event = one_event({"Records": [versitygw("s3:ObjectRemoved:Delete")]})
    assert not event.created and event.key == KEY


def test_broken_records_are_refused_each_with_its_reason_and_the_rest_go_on():
    broken = aws()
    del broken["s3"]["object"]["key"]
    reading = read_message(message({"Records": [broken, "nope", aws(key="ok.jpg"), aws(key="bad%00.jpg")]}))
    assert [e.key for e in reading.events] == ["ok.jpg"]
    assert len(reading.refused) == 3
    assert "'key'" in reading.refused[0] and "not an object" in reading.refused[1] and "NUL" in reading.refused[2]


def test_json_that_is_no_notification_is_a_bad_message_naming_its_fields():
    for value in (message({"hello": "world"}), message({"Records": []})):
        reading = read_message(value)
        if isinstance(reading, Notification):
            assert reading.refused == ["a notification with no records"]
        else:
            assert isinstance(reading, ImageError) and reading.error_type == "bad_message"
            assert "hello" in reading.detail


def test_sequencers_compare_after_right_padding():
    short = one_event({"Records": [aws(sequencer="0055AED6DCD90281E5")]})
    longer = one_event({"Records": [aws(sequencer="0055AED6DCD90281E500")]})
    later = one_event({"Records": [aws(sequencer="0055AED6DCD90281E6")]})
    assert short.stamp == longer.stamp < later.stamp
    assert one_event({"Records": [aws(sequencer="")]}).stamp == ""


def test_versitygw_hex_counters_order_as_numbers_and_a_restart_counts_again_from_1():
    def stamp(sequencer, time="2026-11-30T10:00:00Z"):
        return one_event({"Records": [versitygw(sequencer=sequencer, time=time)]}).stamp

    assert stamp("9") < stamp("A") < stamp("F") < stamp("10") < stamp("11")  # a hex counter, unpadded
    # the gateway restarted: its counter starts at 1 again, a second or more later
    assert stamp("12345") < stamp("1", time="2026-11-30T10:00:03Z")
    # a gateway in another time zone writes its offset: the same instant orders the same
    assert stamp("1", time="2026-11-30T11:00:03+01:00") == stamp("1", time="2026-11-30T10:00:03Z")


def test_a_versitygw_key_overwritten_by_a_later_request_is_read_from_the_arn():
    # versitygw v1.8.0: bucket.name and object.key share a buffer the next request reuses before
    # the event is serialised; the ARN is a copy. Seen live: "n01729977_green_snak" (another
    # object's 20 bytes) in the record of "n01729977_green_snake.JPEG".
    record = versitygw(key="n01729977_green_snake.JPEG")
    record["s3"]["object"]["key"] = "n01729977_green_snak"
    record["s3"]["bucket"]["name"] = "imagez"
    event = one_event({"Records": [record]})
    assert (event.bucket, event.key) == ("images", "n01729977_green_snake.JPEG")
    # a record without that ARN shape: the fields, as sent
    record["s3"]["bucket"]["arn"] = "arn:aws:s3:::images"
    assert one_event({"Records": [record]}).key == "n01729977_green_snak"
