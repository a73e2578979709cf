"""The producer's input and summary, without services."""

import io

from producer.__main__ import SkippedLines, stdin_keys
from producer.publish import DeliveryReport


def test_lines_that_cannot_be_keys_are_skipped_counted_and_the_run_goes_on(capsys):
    data = b"a.jpg\n\xff\xfe.jpg\n" + b"k" * 1_100_000 + b"\nb.jpg\r\nnul\x00.jpg\n\nc.jpg"
    skipped = SkippedLines()
    assert list(stdin_keys(io.BytesIO(data), skipped)) == ["a.jpg", "b.jpg", "c.jpg"]
    assert skipped.count == 3
    err = capsys.readouterr().err
    assert "line 2: not UTF-8" in err and "line 3: 1100000 bytes" in err and "line 5: contains a NUL" in err


def test_text_streams_work_too():
    assert list(stdin_keys(io.StringIO("ü.jpg\n x .png\n"))) == ["ü.jpg", " x .png"]


def test_the_summary_counts_a_failed_key_once():
    report = DeliveryReport(queued=10, delivered=7, failed=2, skipped=4)
    assert report.undelivered == 1  # no report at all: neither delivered nor failed
    assert report.summary(1.0) == (
        "sent 7 of 10 keys in 1.0s (7/s); failed 2; undelivered 1; skipped 4 lines that are not keys"
    )
