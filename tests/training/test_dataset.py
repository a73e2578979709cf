"""Training input: the folder layout, what is refused with a clear message, what is skipped
and listed, and a stratified, seeded split. No services, no model."""

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image

from training import dataset
from training.dataset import DatasetError

MAX_BYTES = 10**7


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
        dataset.from_folder(tmp_path, MAX_BYTES)


def test_an_empty_category_is_named(tmp_path):
    make(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "empty one").mkdir()
    with pytest.raises(DatasetError, match="'empty one'"):
        dataset.from_folder(tmp_path, MAX_BYTES)


def test_unreadable_and_non_image_files_are_skipped_and_listed(tmp_path):
    make(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "broken.jpg").write_bytes(jpeg((1, 2, 3))[:50])
    ds = dataset.load(dataset.from_folder(tmp_path, MAX_BYTES), 10**8)
    assert ds.counts() == {"a": 3, "b": 3}
    assert sorted(s["source"] for s in ds.skipped) == ["a/notes.txt", "b/broken.jpg"]
    assert all(s["reason"] for s in ds.skipped)


def test_a_category_left_with_nothing_readable_is_an_error_not_a_silent_drop(tmp_path):
    make(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="no readable image left in category 'b'"):
        dataset.load(dataset.from_folder(tmp_path, MAX_BYTES), 10**8)


def test_odd_category_names_are_kept_as_given(tmp_path):
    names = ['it\'s "quoted"', "<script>alert(1)<x>", "two words", "Größe 🐈"]  # a folder name has no "/"
    make(tmp_path, dict.fromkeys(names, 2))
    ds = dataset.load(dataset.from_folder(tmp_path, MAX_BYTES), 10**8)
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
    first = dataset.load(dataset.from_folder(tmp_path / "d", MAX_BYTES), 10**8).fingerprint
    assert dataset.load(dataset.from_folder(tmp_path / "d", MAX_BYTES), 10**8).fingerprint == first
    shutil.copy(tmp_path / "d" / "a" / "0.jpg", tmp_path / "d" / "b" / "9.jpg")
    assert dataset.load(dataset.from_folder(tmp_path / "d", MAX_BYTES), 10**8).fingerprint != first


@pytest.mark.parametrize("target", [".", "..", "ROOT", "ABOVE", "SIBLING", "OUTSIDE"])
def test_a_category_that_is_a_symbolic_link_is_refused_naming_it(tmp_path, target):
    """DATA/x -> . would be a category of its own (holding every other one); a real folder
    inside DATA is what a category is."""
    data = make(tmp_path / "data", {"a": 2, "b": 2})
    make(tmp_path / "outside", {"c": 2})
    where = {
        "ROOT": data,
        "ABOVE": tmp_path,
        "SIBLING": data / "a",
        "OUTSIDE": tmp_path / "outside" / "c",
    }.get(target, target)
    (data / "x").symlink_to(where, target_is_directory=True)
    with pytest.raises(DatasetError, match="is a symbolic link to .*: a category must be a real folder inside"):
        dataset.from_folder(data, MAX_BYTES)


def test_below_a_category_links_to_folders_are_not_followed_but_links_to_files_are(tmp_path):
    data = make(tmp_path / "data", {"a": 2, "b": 2})
    outside = make(tmp_path / "outside", {"c": 3})
    (data / "a" / "loop").symlink_to("..", target_is_directory=True)  # would walk DATA again, and again
    (data / "a" / "elsewhere").symlink_to(outside / "c", target_is_directory=True)
    (data / "b" / "linked.jpg").symlink_to(outside / "c" / "0.jpg")  # a folder of links labels photos in place
    items = dataset.from_folder(data, MAX_BYTES)
    read = sorted(it.source for it in items if not it.reason)
    assert read == ["a/0.jpg", "a/1.jpg", "b/0.jpg", "b/1.jpg", "b/linked.jpg"]
    ds = dataset.load(items, 10**8)
    assert ds.counts() == {"a": 2, "b": 3}
    assert {s["source"]: s["reason"] for s in ds.skipped} == {
        "a/elsewhere": "a symbolic link to a folder: not followed",
        "a/loop": "a symbolic link to a folder: not followed",
    }


def test_a_file_over_max_bytes_is_skipped_without_being_read(tmp_path, monkeypatch):
    data = make(tmp_path, {"a": 2, "b": 2})
    with (data / "b" / "huge.jpg").open("wb") as f:  # sparse: takes no disk
        f.truncate(64 * 2**20)
    (data / "a" / "huge-link.jpg").symlink_to(data / "b" / "huge.jpg")
    opened = []
    real_open = Path.open

    def recording_open(self, *args, **kwargs):
        opened.append(self.name)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", recording_open)
    ds = dataset.load(dataset.from_folder(data, 2**20), 10**8)
    assert "huge.jpg" not in opened and "huge-link.jpg" not in opened
    assert ds.counts() == {"a": 2, "b": 2}
    assert {s["source"]: s["reason"] for s in ds.skipped} == {
        "a/huge-link.jpg": f"{64 * 2**20} bytes exceeds MAX_IMAGE_BYTES={2**20}: not read",
        "b/huge.jpg": f"{64 * 2**20} bytes exceeds MAX_IMAGE_BYTES={2**20}: not read",
    }


def test_a_category_of_hidden_files_only_is_empty_not_silently_dropped(tmp_path):
    make(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ".DS_Store").write_bytes(b"\0" * 10)
    with pytest.raises(DatasetError, match="empty category folder.*'c'"):
        dataset.from_folder(tmp_path, MAX_BYTES)
