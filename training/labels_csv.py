"""A labelled training set from a CSV of `image_key,category` rows for images already in the
bucket (fit --labels). Read the way spreadsheets write it: a UTF-8 byte-order mark, CRLF line
ends, blank lines, quoted fields with commas, extra columns and a header in any case (whose
image_key and category columns may be anywhere) just work; anything else is a one-line
DatasetError naming the file and the row (its line in the file)."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from training.dataset import DatasetError, Item

EXPECTED = "expected image_key,category"
OTHER_SEPARATORS = (";", "\t", "|")  # ';' is what Excel writes where ',' is the decimal comma


def read_labels(csv_path: Path) -> list[tuple[str, str]]:
    """The (image_key, category) pairs of the file, in its order."""
    records = csv_records(csv_path, csv_text(csv_path, "--labels takes a CSV file of image_key,category rows"))
    if not records:
        raise DatasetError(f"{csv_path} is empty: {EXPECTED} rows")
    key_col, cat_col = 0, 1
    header = [c.strip().lower() for c in records[0][1]]
    if "image_key" in header and "category" in header:
        key_col, cat_col = header.index("image_key"), header.index("category")
        records = records[1:]
        if not records:
            raise DatasetError(f"{csv_path} has a header and no rows")
    return [_pair(csv_path, row, cells, key_col, cat_col) for row, cells in records]


def csv_text(csv_path: Path, usage: str) -> str:
    """The file as text: UTF-8, without a byte-order mark. `usage`: what the option takes, said
    when the path is not a file (also read by training/class_map.py)."""
    try:
        if not csv_path.is_file():
            what = "a folder" if csv_path.is_dir() else "not a regular file" if csv_path.exists() else "no such file"
            raise DatasetError(f"{csv_path}: {what}; {usage}")
        raw = csv_path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {csv_path}: {exc.strerror or exc}") from None
    body = raw[len(codecs.BOM_UTF8) :] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = len(raw) - len(body) + exc.start
        row = raw.count(b"\n", 0, offset) + 1
        raise DatasetError(
            f"{csv_path} is not UTF-8: byte 0x{raw[offset]:02x} at offset {offset} (row {row}); save it as CSV UTF-8"
        ) from None


def csv_records(csv_path: Path, text: str) -> list[tuple[int, list[str]]]:
    """(row, cells) of every record that is not blank; row is the line the record begins on."""
    reader = csv.reader(io.StringIO(text, newline=""))
    records, begins = [], 1
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                records.append((begins, cells))
            begins = reader.line_num + 1
    except csv.Error as exc:
        raise DatasetError(f"{csv_path}: row {begins}: {exc}") from None
    return records


def _pair(csv_path: Path, row: int, cells: list[str], key_col: int, cat_col: int) -> tuple[str, str]:
    """(image_key, category) of one record, or a DatasetError saying what is wrong with it."""
    if any("\n" in c or "\r" in c for c in (cells[i] for i in (key_col, cat_col) if i < len(cells))):
        raise DatasetError(f"{csv_path}: row {row}: a field runs over several lines (a quote '\"' not closed?)")
    if len(cells) <= max(key_col, cat_col):
        hint = next((f" — is the separator {s!r}?" for s in OTHER_SEPARATORS if s in cells[0]), "")
        columns = "1 column" if len(cells) == 1 else f"{len(cells)} columns"
        raise DatasetError(f"{csv_path}: {EXPECTED}; row {row} has {columns}{hint}")
    key, category = cells[key_col], cells[cat_col].strip()
    if "\x00" in key or "\x00" in category:  # no S3 key or PostgreSQL text holds one
        raise DatasetError(f"{csv_path}: row {row} contains a NUL character")
    if not key.strip() or not category:
        raise DatasetError(f"{csv_path}: {EXPECTED}; row {row} has no {'category' if key.strip() else 'image_key'}")
    return key, category


def from_labels_csv(csv_path: Path, fetch: Callable[[str], bytes]) -> list[Item]:
    """The items of the CSV's rows, each image fetched with `fetch` (one that cannot be is
    listed as skipped with the reason, not fatal)."""
    pairs = read_labels(csv_path)
    if len({category for _, category in pairs}) < 2:
        raise DatasetError(f"{csv_path} names {len({c for _, c in pairs})} category; training needs at least 2")

    def one(pair: tuple[str, str]) -> Item:
        key, category = pair
        try:
            return Item(key, category, fetch(key))
        except DatasetError as exc:  # over MAX_IMAGE_BYTES
            return Item(key, category, b"", str(exc))
        except Exception as exc:  # noqa: BLE001 - reported as skipped with the reason
            return Item(key, category, b"", f"cannot fetch: {exc}")

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(one, pairs))


def fetcher(s3, bucket: str, max_bytes: int) -> Callable[[str], bytes]:
    """A fetch for from_labels_csv: the object's bytes from `bucket`, or a DatasetError for an
    object over `max_bytes`, told by its Content-Length before the body is read (and the read
    stops one byte past the limit, should the length be missing)."""

    def fetch(key: str) -> bytes:
        response = s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            size = response.get("ContentLength")
            if size is not None and size > max_bytes:
                raise DatasetError(f"{size} bytes exceeds MAX_IMAGE_BYTES={max_bytes}: not read")
            data = body.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise DatasetError(f"more than MAX_IMAGE_BYTES={max_bytes} bytes: not read")
            return data
        finally:
            body.close()

    return fetch
