"""Single-machine inference figures, printed as JSON (no Kafka, S3 or database):

- model_img_s: model-only images/s per engine (int8 included) and batch size;
- int8: the int8 engine against fp32 ONNX Runtime: top-1 accuracy and agreement on the
  photos, images/s on one thread at batch 1/4/32 and the ratios;
- decode_img_s: decode+preprocess images/s per path (reference, fast) and thread count;
- limit_img_s: the best of two ways to use every core for decode (fast path) + the default
  engine, images in memory — the ceiling the pipeline benchmark compares against:
  "shared": decode on all cores, then one model call of BATCH_SIZE on all cores;
  "per_core": one lane per core, each decoding and classifying its share in chunks of
  INFER_CHUNK_SIZE on one thread (what several single-threaded workers do).

    python -m benchmarks.inference [--images DIR] [--seconds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from benchmarks.report import emit
from common.imaging import find_images
from consumer.engines import ENGINES
from consumer.images import load_tensor
from consumer.model import load_classifier
from settings import Settings

MAX_PIXELS = 60_000_000


def rate(fn, items: int, seconds: float) -> float:
    """items/s of fn() (which handles `items` items per call), after one warm-up call."""
    fn()
    calls, started = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - started < seconds:
        fn()
        calls += 1
    return round(items * calls / (time.perf_counter() - started), 1)


def model_rates(settings: Settings, seconds: float, photos: torch.Tensor) -> dict:
    """On real photos, not noise: the int8 engine's fp32 re-check depends on what it sees."""
    out = {}
    for engine in ENGINES:
        clf = load_classifier(settings.model_copy(update={"model_engine": engine}))
        out[engine] = {
            str(b): rate(lambda b=b: clf.predict(photos[:b]), b, seconds)  # noqa: B023 - called now
            for b in (1, 4, 32, 64)
        }
        print(f"model {engine}: {out[engine]}", file=sys.stderr)
    return out


def int8_report(settings: Settings, folder: Path, seconds: float) -> dict:
    """int8 against fp32 ONNX Runtime, pure and with its fp32 re-check of close calls:
    top-1 accuracy (with labels.csv) and agreement on the folder's photos, the share of
    photos re-checked, and images/s on one thread at batch 1, 4 and 32, with the ratios."""
    one = settings.model_copy(update={"torch_threads": 1})
    margin = settings.model_int8_recheck_margin
    int8 = one.model_copy(update={"model_engine": "onnxruntime-int8"})
    models = {
        "fp32": load_classifier(one.model_copy(update={"model_engine": "onnxruntime"})),
        "int8_pure": load_classifier(int8.model_copy(update={"model_int8_recheck_margin": 0.0})),
        "int8": load_classifier(int8),
    }
    paths = find_images(folder)
    tensors = [load_tensor(p.read_bytes(), MAX_PIXELS, settings.fast_decode) for p in paths]
    batches = [torch.stack(tensors[i : i + 50]) for i in range(0, len(tensors), 50)]
    tops = {name: [t for b in batches for t in clf.predict(b)] for name, clf in models.items()}
    top = {name: [t[0].class_index for t in ts] for name, ts in tops.items()}

    def agreement(name: str) -> float:
        return round(sum(a == b for a, b in zip(top["fp32"], top[name])) / len(paths), 4)

    close = sum(t[0].confidence - t[1].confidence < margin for t in tops["int8_pure"])
    out: dict = {
        "calibration": str(settings.model_calibration_dir or settings.shared_dir / "images" / "dev"),
        "calibration_images": settings.model_calibration_images,
        "recheck_margin": margin,
        "rechecked_share": round(close / len(paths), 4),
        "agreement": agreement("int8"),
        "agreement_pure_int8": agreement("int8_pure"),
    }
    labels_csv = folder / "labels.csv"
    if labels_csv.is_file():
        truth = {r["filename"]: int(r["class_index"]) for r in csv.DictReader(labels_csv.read_text().splitlines())}
        for name in models:
            hits = sum(truth.get(p.name) == c for p, c in zip(paths, top[name]))
            out[f"{name}_top1"] = round(hits / len(paths), 4)
    cycled = [tensors[i % len(tensors)] for i in range(32)]
    for name, clf in models.items():
        out[f"{name}_img_s_1_thread"] = {
            str(b): rate(lambda b=b, clf=clf: clf.predict(torch.stack(cycled[:b])), b, seconds)  # noqa: B023
            for b in (1, 4, 32)
        }
    for name in ("int8_pure", "int8"):
        out[f"{name}_over_fp32"] = {
            b: round(out[f"{name}_img_s_1_thread"][b] / out["fp32_img_s_1_thread"][b], 2)
            for b in out["fp32_img_s_1_thread"]
        }
    print(f"int8: {out}", file=sys.stderr)
    return out


def decode_rates(blobs: list[bytes], seconds: float) -> dict:
    out = {}
    for path, fast in (("reference", False), ("fast", True)):
        out[path] = {}
        for threads in sorted({1, os.cpu_count() or 1}):
            with ThreadPoolExecutor(threads) as pool:
                out[path][str(threads)] = rate(
                    lambda: list(pool.map(lambda b: load_tensor(b, MAX_PIXELS, fast), blobs)),  # noqa: B023 - called now
                    len(blobs),
                    seconds,
                )
        print(f"decode {path}: {out[path]}", file=sys.stderr)
    return out


def limit_rates(settings: Settings, blobs: list[bytes], seconds: float) -> dict[str, float]:
    """images/s of decode + model with every core, per way of using them (see the docstring)."""
    cores = os.cpu_count() or 1
    shared = load_classifier(settings.model_copy(update={"torch_threads": cores}))
    lanes = [load_classifier(settings.model_copy(update={"torch_threads": 1})) for _ in range(cores)]

    def tensors(chunk: list[bytes]) -> torch.Tensor:
        return torch.stack([load_tensor(b, MAX_PIXELS, settings.fast_decode) for b in chunk])

    def all_shared():
        size = settings.batch_size
        with ThreadPoolExecutor(cores) as pool:
            for i in range(0, len(blobs), size):
                batch = list(pool.map(lambda b: load_tensor(b, MAX_PIXELS, settings.fast_decode), blobs[i : i + size]))
                shared.predict(torch.stack(batch))

    def per_core():
        size = settings.infer_chunk_size

        def lane(j: int) -> None:
            mine = blobs[j::cores]
            for i in range(0, len(mine), size):
                lanes[j].predict(tensors(mine[i : i + size]))

        with ThreadPoolExecutor(cores) as pool:
            list(pool.map(lane, range(cores)))

    return {"shared": rate(all_shared, len(blobs), seconds), "per_core": rate(per_core, len(blobs), seconds)}


def limit_rate(settings: Settings, blobs: list[bytes], seconds: float) -> float:
    return max(limit_rates(settings, blobs, seconds).values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.inference", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=Path, help="folder of photos (default SHARED_DIR/images/dev)")
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    settings = Settings(torch_threads=cores, decode_workers=cores)
    folder = args.images or settings.shared_dir / "images" / "dev"
    blobs = [p.read_bytes() for p in find_images(folder)]
    if not blobs:
        sys.exit(f"no images under {folder}")
    import onnxruntime

    limits = limit_rates(settings, blobs, args.seconds)
    print(f"limit: {limits}", file=sys.stderr)
    result = {
        "machine": {
            "cpu_count": cores,
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
        "images": {"folder": str(folder), "count": len(blobs)},
        "model_img_s": model_rates(
            settings,
            args.seconds,
            torch.stack([load_tensor(blobs[i % len(blobs)], MAX_PIXELS, settings.fast_decode) for i in range(64)]),
        ),
        "decode_img_s": decode_rates(blobs, args.seconds),
        "int8": int8_report(settings, folder, args.seconds),
        "limit_ways_img_s": limits,
        "limit_img_s": max(limits.values()),
        "limit_settings": {
            "engine": settings.model_engine,
            "batch_size": settings.batch_size,
            "infer_chunk_size": settings.infer_chunk_size,
            "cores": cores,
            "fast_decode": settings.fast_decode,
        },
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
