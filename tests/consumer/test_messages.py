"""How a raw Kafka message becomes an image key, or a recorded reason it cannot."""
from consumer.batch import Message, error_key, parse_key
from consumer.images import ImageError


def test_a_utf8_message_is_its_key():
    assert parse_key(Message("dir/ünïcode 🐈.jpg".encode())) == "dir/ünïcode 🐈.jpg"


def test_empty_non_utf8_and_nul_messages_are_bad_messages():
    for value in (b"", None, b"\xff\xfe", b"a\x00b"):
        result = parse_key(Message(value, partition=2, offset=9))
        assert isinstance(result, ImageError) and result.error_type == "bad_message"


def test_error_keys_are_readable_and_unique_per_message():
    assert error_key(Message(b"", 2, 9)) == "<empty message p2@9>"
    assert error_key(Message(b"", 2, 10)) != error_key(Message(b"", 2, 9))
    assert error_key(Message(b"\xff\xfeok")) == "\\xff\\xfeok"
    assert error_key(Message(b"a\x00b")) == "a\\x00b"  # storable: PostgreSQL text refuses NUL
    assert len(error_key(Message(b"x" * 5000))) == 1000
