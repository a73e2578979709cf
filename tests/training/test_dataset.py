"""Training input: the folder layout, what is refused with a clear message, what is skipped
and listed, and a stratified, seeded split. No services, no model."""

import io
import shutil

import pytest
from PIL import Image

from training import dataset
from training.dataset import DatasetError


def jpeg(color) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(out, "JPEG")
    return out.getvalue()


def make(root, spec: dict[str, int]):
    for category, n in spec.items():
        (root / category).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / category / f"{i}.jpg").write_bytes(jpeg((i * 20 % 255, 40, 90)))
    return root


def test_fewer_than_two_categories_is_a_clear_error(tmp_path):
    make(tmp_path, {"only": 3})
    with pytest.raises(DatasetError, match="at least 2"):
        dataset.from_folder(tmp_path)


def test_an_empty_category_is_named(tmp_path):
    make(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "empty one").mkdir()
    with pytest.raises(DatasetError, match="'empty one'"):
        dataset.from_folder(tmp_path)


def test_unreadable_and_non_image_files_are_skipped_and_listed(tmp_path):
    make(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "broken.jpg").write_bytes(jpeg((1, 2, 3))[:50])
    ds = dataset.load(dataset.from_folder(tmp_path), 10**8)
    assert ds.counts() == {"a": 3, "b": 3}
    assert sorted(s["source"] for s in ds.skipped) == ["a/notes.txt", "b/broken.jpg"]
    assert all(s["reason"] for s in ds.skipped)


def test_a_category_left_with_nothing_readable_is_an_error_not_a_silent_drop(tmp_path):
    make(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="no readable image left in category 'b'"):
        dataset.load(dataset.from_folder(tmp_path), 10**8)


def test_odd_category_names_are_kept_as_given(tmp_path):
    names = ['it\'s "quoted"', "<script>alert(1)<x>", "two words", "Größe 🐈"]  # a folder name has no "/"
    make(tmp_path, dict.fromkeys(names, 2))
    ds = dataset.load(dataset.from_folder(tmp_path), 10**8)
    assert sorted(ds.categories) == sorted(names)


def test_the_split_is_stratified_seeded_and_keeps_one_of_each_on_both_sides():
    labels = [0] * 10 + [1] * 5 + [2] * 2
    train, val = dataset.split(labels, 0.2, seed=7)
    assert sorted(train + val) == list(range(len(labels))) and not set(train) & set(val)
    assert [sum(labels[i] == c for i in val) for c in range(3)] == [2, 1, 1]
    assert dataset.split(labels, 0.2, seed=7) == (train, val)
    assert dataset.split(labels, 0.2, seed=8) != (train, val)


def test_the_fingerprint_follows_the_content(tmp_path):
    make(tmp_path / "d", {"a": 2, "b": 2})
    first = dataset.load(dataset.from_folder(tmp_path / "d"), 10**8).fingerprint
    assert dataset.load(dataset.from_folder(tmp_path / "d"), 10**8).fingerprint == first
    shutil.copy(tmp_path / "d" / "a" / "0.jpg", tmp_path / "d" / "b" / "9.jpg")
    assert dataset.load(dataset.from_folder(tmp_path / "d"), 10**8).fingerprint != first
