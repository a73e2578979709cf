"""How a raw Kafka message becomes an image key, or a recorded reason it cannot: what the
worker reads (consumer.notifications.read_message) and the error key it records."""

from common.errors import ImageError
from common.keys import error_key
from consumer.notifications import read_message


def test_a_utf8_message_is_its_key():
    assert read_message("dir/ünïcode 🐈.jpg".encode()) == "dir/ünïcode 🐈.jpg"


def test_empty_non_utf8_and_nul_messages_are_bad_messages():
    for value in (b"", None, b"\xff\xfe", b"a\x00b"):
        result = read_message(value, "at partition 2 offset 9")
        assert isinstance(result, ImageError) and result.error_type == "bad_message"


def test_error_keys_are_readable_and_unique_per_message():
    assert error_key(b"", 2, 9) == "<empty message p2@9>"
    assert error_key(b"", 2, 10) != error_key(b"", 2, 9)
    assert error_key(b"\xff\xfeok") == "\\xff\\xfeok"
    assert error_key(b"a\x00b") == "a\\x00b"  # storable: PostgreSQL text refuses NUL


def test_long_keys_are_stored_bounded_in_bytes_and_never_collide():
    from common.keys import MAX_STORED_KEY_BYTES, stored_key

    a, b = "é" * 3000, "é" * 2999 + "e"  # ~6 KB of UTF-8, differing only at the end
    sa, sb = stored_key(a), stored_key(b)
    assert len(sa.encode()) <= MAX_STORED_KEY_BYTES and len(sb.encode()) <= MAX_STORED_KEY_BYTES
    assert sa != sb and sa.startswith("é" * 100)
    assert stored_key(a) == sa  # a redelivery maps to the same row
    assert stored_key("short.jpg") == "short.jpg"
    assert len(error_key(("ü" * 5000).encode()).encode()) <= MAX_STORED_KEY_BYTES


def test_a_key_longer_than_s3_allows_is_a_bad_key_without_a_request():
    result = read_message(b"k" * 2000)
    assert isinstance(result, ImageError) and result.error_type == "bad_key"
