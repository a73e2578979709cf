"""fit --labels CSV: the files spreadsheets write are read as meant, and every file that cannot
be is one line naming the file and the row. No services: images come from a dict."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from training.dataset import DatasetError
from training.labels_csv import fetcher, from_labels_csv

REPO = Path(__file__).resolve().parents[2]
BOM = b"\xef\xbb\xbf"
PAIRS = [("k1.jpg", "dog"), ("k2.jpg", "cat")]


def fetch(key: str) -> bytes:
    return b"image " + key.encode()


def read(tmp_path: Path, content: bytes) -> list[tuple[str, str]]:
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    return [(it.source, it.category) for it in from_labels_csv(path, fetch)]


@pytest.mark.parametrize(
    "content, pairs",
    [
        (BOM + b"image_key,category\r\nk1.jpg,dog\r\nk2.jpg,cat\r\n", PAIRS),  # Excel's "CSV UTF-8"
        (BOM + b"k1.jpg,dog\nk2.jpg,cat\n", PAIRS),
        (b"k1.jpg,dog\r\nk2.jpg,cat", PAIRS),
        (b"image_key,category\n\nk1.jpg,dog\n\n  \n,\nk2.jpg,cat\n\n", PAIRS),  # blank lines and empty rows
        (b"image_key,category,notes\nk1.jpg,dog,sharp\nk2.jpg,cat,\n", PAIRS),
        (b"IMAGE_KEY,Category\nk1.jpg,dog\nk2.jpg,cat\n", PAIRS),
        (b"Notes, Category ,Image_Key\nsharp,dog,k1.jpg\n,cat,k2.jpg\n", PAIRS),  # the header says where
        (
            b'"k1, the first.jpg",dog\n"k2 ""two"".jpg","cat, grey"\n',
            [("k1, the first.jpg", "dog"), ('k2 "two".jpg', "cat, grey")],
        ),
        ("Größe 🐈.jpg, dog \nk2.jpg,cat\n".encode(), [("Größe 🐈.jpg", "dog"), ("k2.jpg", "cat")]),
    ],
    ids=[
        "bom-crlf-header",
        "bom",
        "crlf-no-last-newline",
        "blank-lines",
        "extra-columns",
        "header-case",
        "header-order",
        "quoted-commas",
        "utf8-and-spaces",
    ],
)
def test_what_spreadsheets_write_just_works(tmp_path, content, pairs):
    assert read(tmp_path, content) == pairs


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "labels.csv: no such file"),
        (b"image_key,category\nk1.jpg,caf\xe9\nk2.jpg,dog\n", "is not UTF-8: byte 0xe9 at offset 29 (row 2)"),
        (BOM + b"k1.jpg,dog\nk2.jpg,\xff\n", "is not UTF-8: byte 0xff at offset 21 (row 2)"),
        (
            b"image_key;category\nk1.jpg;dog\nk2.jpg;cat\n",
            "expected image_key,category; row 1 has 1 column — is the separator ';'?",
        ),
        (b"k1.jpg,dog\nk2.jpg\tcat\n", "row 2 has 1 column — is the separator '\\t'?"),
        (b"k1.jpg,dog\nk2.jpg\n", "expected image_key,category; row 2 has 1 column"),
        (b"Notes,category,image_key\nsharp,dog\n", "row 2 has 2 columns"),
        (b"", "labels.csv is empty"),
        (BOM + b"\r\n\r\n", "labels.csv is empty"),
        (b"image_key,category\r\n", "has a header and no rows"),
        (b"k1.jpg,dog\nk2.jpg,\n", "row 2 has no category"),
        (b"k1.jpg,dog\n ,cat\n", "row 2 has no image_key"),
        (b'k1.jpg,dog\n\n"k2.jpg,cat\nk3.jpg,dog\n', "row 3: a field runs over several lines"),
        (b"k1.jpg,dog\nk2.jpg,dog\n", "names 1 category"),
        (b"k1.jpg,dog\nk\x002.jpg,cat\n", "row 2 contains a NUL character"),
    ],
)
def test_a_file_that_cannot_be_read_as_meant_is_one_line_naming_file_and_row(tmp_path, content, message):
    if content is not None:
        (tmp_path / "labels.csv").write_bytes(content)
    with pytest.raises(DatasetError) as caught:
        from_labels_csv(tmp_path / "labels.csv", fetch)
    text = str(caught.value)
    assert message in text and str(tmp_path / "labels.csv") in text and "\n" not in text, text


def test_a_folder_is_not_a_labels_file(tmp_path):
    with pytest.raises(DatasetError, match="a folder"):
        from_labels_csv(tmp_path, fetch)


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        (b"k1.jpg,caf\xe9\n", "is not UTF-8: byte 0xe9 at offset 10 (row 1)"),
        (b"k1.jpg;dog\n", "is the separator ';'?"),
    ],
)
def test_the_command_says_it_in_one_line_and_exits_1(tmp_path, content, message):
    if content is not None:
        (tmp_path / "labels.csv").write_bytes(content)
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "S3_ENDPOINT_URL": "http://127.0.0.1:1",
    }
    res = subprocess.run(
        [sys.executable, "-m", "training", "fit", "--labels", str(tmp_path / "labels.csv"), "--name", "csv"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-2000:]
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / 'labels.csv'}") and message in line, line


class FakeBody:
    """A get_object Body that records how much was read."""

    def __init__(self, data: bytes):
        self.data, self.reads, self.closed = data, [], False

    def read(self, amt=None):
        self.reads.append(amt)
        return self.data if amt is None else self.data[:amt]

    def close(self):
        self.closed = True


class FakeS3:
    def __init__(self, objects: dict[str, bytes], content_length: bool = True):
        self.objects, self.content_length, self.bodies = objects, content_length, {}

    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's names
        body = self.bodies[Key] = FakeBody(self.objects[Key])
        return {"Body": body, **({"ContentLength": len(self.objects[Key])} if self.content_length else {})}


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
def test_the_bucket_fetch_never_reads_past_max_image_bytes(tmp_path, content_length):
    s3 = FakeS3({"small.jpg": b"s" * 100, "big.jpg": b"b" * 5000, "other.jpg": b"o" * 100}, content_length)
    (tmp_path / "labels.csv").write_text("small.jpg,dog\nbig.jpg,dog\nother.jpg,cat\n")
    items = from_labels_csv(tmp_path / "labels.csv", fetcher(s3, "images", 1000))
    assert [(it.source, it.data, it.reason) for it in items[::2]] == [
        ("small.jpg", b"s" * 100, ""),
        ("other.jpg", b"o" * 100, ""),
    ]
    big = items[1]
    assert big.source == "big.jpg" and big.data == b"" and "MAX_IMAGE_BYTES=1000" in big.reason
    assert s3.bodies["big.jpg"].reads == ([] if content_length else [1001]) and s3.bodies["big.jpg"].closed
