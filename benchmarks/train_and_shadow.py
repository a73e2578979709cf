"""Training and shadow-serving figures for your own categories, printed as JSON (no service):

- per mode (frozen head, `--unfreeze 2`): training seconds, epochs, validation top-1/top-5
  on the coarse folder (../shared/images/coarse.csv over the dev photos: 240 photos, 8
  categories, every validation photo of a fine class the training photos do not have);
- model images/s of the trained version alone and with a shadow version beside it on the
  same batches (what a worker's inference stage does with and without `training shadow`),
  at chunk size INFER_CHUNK_SIZE on one thread, as a worker runs it.

    python -m benchmarks.train_and_shadow [--seconds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.inference import rate
from benchmarks.report import emit
from consumer.images import preprocess
from consumer.serving import Loader, Served
from consumer.weights import load_base_model
from settings import Settings
from training import dataset, evaluation, train


def coarse_folder(shared: Path, root: Path) -> Path:
    coarse = {r["class_index"]: r["coarse"] for r in csv.DictReader((shared / "images" / "coarse.csv").open())}
    dev = shared / "images" / "dev"
    for row in csv.DictReader((dev / "labels.csv").open()):
        if row["class_index"] in coarse:
            (root / coarse[row["class_index"]]).mkdir(exist_ok=True)
            os.symlink(dev / row["filename"], root / coarse[row["class_index"]] / row["filename"])
    return root


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.train_and_shadow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    settings = Settings(torch_threads=cores)
    torch.set_num_threads(cores)
    with tempfile.TemporaryDirectory() as tmp:
        ds = dataset.load(
            dataset.from_folder(coarse_folder(settings.shared_dir, Path(tmp)), settings.max_image_bytes),
            settings.max_image_pixels,
        )
    images, labels = [i for i, _ in ds.images], [lab for _, lab in ds.images]
    train_idx, val_idx = dataset.split(labels, 0.2, 0)
    base, _, _ = load_base_model(settings, "squeezenet1_1")
    modes, models = {}, {}
    for mode, unfreeze in (("frozen", 0), ("unfreeze_2", 2)):
        started = time.perf_counter()
        result = train.fit(
            base,
            "squeezenet1_1",
            images,
            labels,
            train_idx,
            val_idx,
            len(ds.categories),
            train.FitOptions(unfreeze=unfreeze, seed=0),
        )
        m = evaluation.metrics(
            train.predict_logits(result.model, images, val_idx), [labels[i] for i in val_idx], ds.categories
        )
        modes[mode] = {
            "seconds": round(time.perf_counter() - started, 1),
            "epochs": result.epochs,
            "best_epoch": result.best_epoch,
            "val_top1": m["top1"],
            "val_top5": m["top5"],
        }
        models[mode] = result.model
        print(f"{mode}: {modes[mode]}", file=sys.stderr)

    one_thread = settings.model_copy(update={"torch_threads": 1, "model_cache_dir": Path(tempfile.mkdtemp())})
    torch.set_num_threads(1)
    loader = Loader(one_thread)
    production = Served("bench", 1, loader.network(models["frozen"], "squeezenet1_1", ds.categories))
    shadow = Served("bench", 2, loader.network(models["unfreeze_2"], "squeezenet1_1", ds.categories), "shadow")
    chunk = settings.infer_chunk_size
    batch = torch.stack([preprocess(images[i]) for i in range(chunk)])
    alone_set, both_set = loader.model_set([production], []), loader.model_set([production], [shadow])
    alone = rate(lambda: alone_set.predict(batch), chunk, args.seconds)
    both = rate(lambda: both_set.predict(batch), chunk, args.seconds)  # a fine-tuned shadow: its own trunk
    result = {
        "machine": {
            "cpu_count": cores,
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "data": {"categories": len(ds.categories), "train": len(train_idx), "val": len(val_idx)},
        "training": modes,
        "serving_model_img_s_one_thread": {
            "production_alone": alone,
            "with_shadow": both,
            "ratio": round(both / alone, 3),
            "engine": settings.model_engine,
            "chunk": chunk,
        },
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
