"""A labelled training set: a folder with one sub-folder per category, or a CSV of
`image_key,category` rows for images already in the bucket (training/labels_csv.py). Every
image is decoded once, with the workers' own decoder, so what trains is what will be served;
files that do not decode are listed (with why), never fatal unless nothing is left.

The split into training and validation is stratified and seeded: the same folder and seed
give the same split on any machine."""

from __future__ import annotations

import hashlib
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


def from_folder(root: Path) -> list[Item]:
    """DATA/<category>/<files>: every regular file below a category folder is a candidate
    (non-images are reported as skipped, not silently ignored)."""
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(dirs) < 2:
        raise DatasetError(
            f"{root} has {len(dirs)} category folder(s); training needs at least 2 (DATA/<category>/<images>)"
        )
    empty = [d.name for d in dirs if not any(p.is_file() for p in d.rglob("*"))]
    if empty:
        raise DatasetError(f"empty category folder(s): {', '.join(repr(e) for e in empty)}")
    items = []
    for d in dirs:
        for path in sorted(p for p in d.rglob("*") if p.is_file() and not p.name.startswith(".")):
            try:
                items.append(Item(path.relative_to(root).as_posix(), d.name, path.read_bytes()))
            except OSError as exc:
                items.append(Item(path.relative_to(root).as_posix(), d.name, b""))
                items[-1].source += f" (unreadable: {exc.strerror or exc})"
    return items


def load(items: list[Item], max_pixels: int, max_aspect: float = 20.0, workers: int = 4) -> Dataset:
    """Decode every item; the categories are the sorted names that kept at least one image."""

    def decode_one(item: Item):
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
