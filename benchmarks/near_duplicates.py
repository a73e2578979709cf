"""Where "the same photo" ends: the cosine between a photo's embedding and its copies' against
the cosine between two different photos, on the dev photos.

Copies of each dev photo: re-encoded as JPEG at quality 30, 50 and 75; resized to a half and a
quarter (JPEG 85); cropped to its central 90%; mirrored. Different photos: every pair of two
dev photos (they are of 500 different scenes). For each kind of copy the spread of its cosine to
its photo; for the different pairs the top of theirs; and at each threshold, the share of
copies found (recall, per kind) and of pairs above it that are copies (precision). The chosen
threshold (db/similar.py's NEAR_DUPLICATE) is the lowest with no pair of different photos above
it: every re-encoded copy, and nearly every half-size one, is found.
Prints JSON; --out writes it.

    python -m benchmarks.near_duplicates --out benchmarks/results/near_duplicates.json
"""

from __future__ import annotations

import argparse
import io
import os
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from benchmarks.cpu import model_name as cpu_model
from benchmarks.report import emit
from settings import Settings


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def _crop(img: Image.Image, keep: float) -> Image.Image:
    w, h = img.size
    dx, dy = int(w * (1 - keep) / 2), int(h * (1 - keep) / 2)
    return img.crop((dx, dy, w - dx, h - dy))


COPIES = {
    "jpeg_q30": lambda img: _jpeg(img, 30),
    "jpeg_q50": lambda img: _jpeg(img, 50),
    "jpeg_q75": lambda img: _jpeg(img, 75),
    "half_size": lambda img: _jpeg(img.resize((max(1, img.width // 2), max(1, img.height // 2))), 85),
    "quarter_size": lambda img: _jpeg(img.resize((max(1, img.width // 4), max(1, img.height // 4))), 85),
    "crop_90": lambda img: _jpeg(_crop(img, 0.9), 85),
    "mirrored": lambda img: _jpeg(ImageOps.mirror(img), 85),
}
# what counts as the same photo (a mirror or a crop is a new view; a quarter of a dev photo,
# ~125x94 pixels, is below the model's 224: what is left of it is another picture)
SAME = ("jpeg_q30", "jpeg_q50", "jpeg_q75", "half_size")


def _spread(values: np.ndarray) -> dict:
    return {
        "min": round(float(values.min()), 4),
        "p5": round(float(np.percentile(values, 5)), 4),
        "median": round(float(np.median(values)), 4),
    }


def run(settings: Settings, thresholds: list[float], limit: int = 0) -> dict:
    from consumer.embedding import Embedder

    embedder = Embedder(settings)
    paths = sorted((settings.shared_dir / "images" / "dev").glob("*.JPEG"))[: limit or None]
    photos = [p.read_bytes() for p in paths]
    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in photos]
    originals = np.stack(embedder.embed(photos))
    copies = {}
    for kind, make in COPIES.items():
        copies[kind] = np.stack(embedder.embed([make(img) for img in images]))
    to_photo = {kind: np.einsum("ij,ij->i", originals, v) for kind, v in copies.items()}
    pairs = originals @ originals.T
    different = pairs[np.triu_indices(len(originals), 1)]
    same = np.concatenate([to_photo[k] for k in SAME])
    by_threshold = {}
    for t in thresholds:
        found, false = int((same >= t).sum()), int((different >= t).sum())
        by_threshold[str(t)] = {
            "copies_found": round(found / len(same), 4),
            "found_by_kind": {kind: round(float((v >= t).mean()), 4) for kind, v in to_photo.items()},
            "different_pairs_above": false,
            "precision": round(found / (found + false), 4) if found + false else None,
        }
    return {
        "photos": len(photos),
        "copy_cosine": {kind: _spread(v) for kind, v in to_photo.items()},
        "different_pairs": {
            "count": int(len(different)),
            "max": round(float(different.max()), 4),
            "p99_9": round(float(np.percentile(different, 99.9)), 4),
            "median": round(float(np.median(different)), 4),
        },
        "same_counts_as": list(SAME),
        "by_threshold": by_threshold,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.near_duplicates",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--thresholds", default="0.80,0.82,0.83,0.84,0.85,0.86,0.88,0.90")
    ap.add_argument("--limit", type=int, default=0, help="the first N dev photos only (0: all)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    result = {
        "benchmark": "near_duplicates",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        **run(Settings(), [float(t) for t in args.thresholds.split(",")], args.limit),
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
