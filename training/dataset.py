"""A labelled training set: a folder with one sub-folder per category, or a CSV of
`image_key,category` rows for images already in the bucket (training/labels_csv.py). Every
image is decoded once, with the workers' own decoder, so what trains is what will be served;
files that do not decode are listed (with why), never fatal unless nothing is left.

The split into training and validation is stratified and seeded: the same folder and seed
give the same split on any machine."""

from __future__ import annotations

import hashlib
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from common.errors import ImageError, VisionScalingError
from common.imaging import decode

MIN_PER_CATEGORY = 2  # one to train on, one to validate with


class DatasetError(VisionScalingError, ValueError):
    """Training input that cannot make a model; the message says what to fix."""


@dataclass
class Item:
    source: str  # a path below the folder, or an S3 key
    category: str
    data: bytes
    reason: str = ""  # why it was not read (too large, unreadable, a link not followed): skipped


@dataclass
class Dataset:
    categories: list[str]
    images: list[tuple[Image.Image, int]]  # decoded RGB image, category index
    sources: list[str]
    skipped: list[dict] = field(default_factory=list)  # {"source", "reason"}
    fingerprint: str = ""

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.categories, 0)
        for _, label in self.images:
            out[self.categories[label]] += 1
        return out


def from_folder(root: Path, max_bytes: int) -> list[Item]:
    """DATA/<category>/<files>: every file below a category folder is a candidate (what is not
    an image, is over `max_bytes` or cannot be read is listed as skipped, not silently ignored).
    Each category is a real folder inside DATA (_categories); below it, links to folders are
    not followed, so nothing outside DATA is reached through them and no link loops."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    dirs = _categories(root)
    if len(dirs) < 2:
        raise DatasetError(
            f"{root} has {len(dirs)} category folder(s); training needs at least 2 (DATA/<category>/<images>)"
        )
    found = {d: _entries(d) for d in dirs}
    empty = [d.name for d in dirs if not found[d]]
    if empty:
        raise DatasetError(f"empty category folder(s): {', '.join(repr(e) for e in empty)}")
    return [_item(path.relative_to(root).as_posix(), d.name, path, max_bytes) for d in dirs for path in found[d]]


def _categories(root: Path) -> list[Path]:
    """The category folders of DATA, refusing a symbolic link among them: one to DATA itself
    or above would make DATA a category of its own (and walk in a loop), one to another folder
    of DATA would put its images in two categories, one to a folder elsewhere would be read from
    outside DATA."""
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    for p in entries:
        if p.is_symlink() and p.is_dir():
            target, inside = p.resolve(), root.resolve()
            where = (
                "DATA itself or a folder above it"
                if target == inside or target in inside.parents
                else "another folder of DATA"
                if target.is_relative_to(inside)
                else "a folder outside DATA"
            )
            raise DatasetError(
                f"{p} is a symbolic link to {target} ({where}): a category must be a real folder inside {root} "
                "(link its files, not the folder)"
            )
    return [p for p in entries if p.is_dir()]


def _entries(folder: Path) -> list[Path]:
    """Everything below `folder` that is not hidden, links to folders included (to be listed
    as not followed), in path order; the folders themselves are walked, links to them are not."""
    found = []
    for parent, dirs, files in os.walk(folder, followlinks=False):
        here = Path(parent)
        found += [here / n for n in files if not n.startswith(".")]
        found += [here / n for n in dirs if (here / n).is_symlink()]
    return sorted(found)


def _item(source: str, category: str, path: Path, max_bytes: int) -> Item:
    """One file's bytes, never more than `max_bytes` read: the size is checked before reading
    (and the read stops one byte past the limit, should the file grow meanwhile)."""

    def skipped(reason: str) -> Item:
        return Item(source, category, b"", reason)

    if path.is_symlink() and path.is_dir():
        return skipped("a symbolic link to a folder: not followed")
    if not path.is_file():
        return skipped("not a regular file (a broken link, a pipe or a device)")
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return skipped(f"{size} bytes exceeds MAX_IMAGE_BYTES={max_bytes}: not read")
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        return skipped(f"unreadable: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return skipped(f"more than MAX_IMAGE_BYTES={max_bytes} bytes: not read")
    return Item(source, category, data)


def load(items: list[Item], max_pixels: int, max_aspect: float = 20.0, workers: int = 4) -> Dataset:
    """Decode every item; the categories are the sorted names that kept at least one image."""

    def decode_one(item: Item):
        if item.reason:
            return item, None, item.reason
        if not item.data:
            return item, None, "unreadable or empty"
        try:
            return item, decode(item.data, max_pixels, fast=True, max_aspect=max_aspect), None
        except ImageError as exc:
            return item, None, str(exc)

    with ThreadPoolExecutor(workers) as pool:
        decoded = list(pool.map(decode_one, items))
    skipped = [{"source": it.source, "category": it.category, "reason": why} for it, img, why in decoded if img is None]
    kept = [(it, img) for it, img, _ in decoded if img is not None]
    categories = sorted({it.category for it, _ in kept})
    lost = sorted({it.category for it in items} - set(categories))
    if lost:
        raise DatasetError(
            f"no readable image left in category {', '.join(repr(c) for c in lost)} "
            f"({len(skipped)} file(s) skipped; see the list)\n" + _skipped_lines(skipped)
        )
    if len(categories) < 2:
        raise DatasetError("fewer than 2 categories have a readable image\n" + _skipped_lines(skipped))
    thin = [c for c in categories if sum(it.category == c for it, _ in kept) < MIN_PER_CATEGORY]
    if thin:
        raise DatasetError(
            f"category {', '.join(repr(c) for c in thin)} has fewer than {MIN_PER_CATEGORY} readable images "
            "(one to train on and one to validate with)"
        )
    index = {c: i for i, c in enumerate(categories)}
    digest = hashlib.sha256()
    for it, _ in sorted(kept, key=lambda p: (p[0].category, p[0].source)):
        digest.update(f"{it.category}\0{it.source}\0{hashlib.sha256(it.data).hexdigest()}\n".encode())
    return Dataset(
        categories=categories,
        images=[(img, index[it.category]) for it, img in kept],
        sources=[it.source for it, _ in kept],
        skipped=skipped,
        fingerprint=digest.hexdigest(),
    )


def _skipped_lines(skipped: list[dict], limit: int = 20) -> str:
    lines = [f"  skipped {s['source']!r}: {s['reason']}" for s in skipped[:limit]]
    if len(skipped) > limit:
        lines.append(f"  … and {len(skipped) - limit} more")
    return "\n".join(lines)


def split(labels: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Stratified: per category, a seeded shuffle, then round(n * val_fraction) images (at
    least 1, at most n - 1) to validation. Returns (train indices, validation indices)."""
    if not 0 < val_fraction < 1:
        raise DatasetError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    rng = random.Random(seed)
    train: list[int] = []
    val: list[int] = []
    for label in sorted(set(labels)):
        members = [i for i, lab in enumerate(labels) if lab == label]
        rng.shuffle(members)
        n_val = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


def describe(ds: Dataset) -> str:
    counts = ds.counts()
    width = max(len(c) for c in counts)
    lines = [f"  {c!r:<{width + 2}} {n:>5} images" for c, n in counts.items()]
    if ds.skipped:
        lines.append(f"  {len(ds.skipped)} file(s) skipped:")
        lines.append(_skipped_lines(ds.skipped))
    return "\n".join(lines)
