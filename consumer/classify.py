"""python -m consumer.classify [--top-k K] [--weights PATH] [--engine E] [--batch-size N] PATH...

Classify image files or folders (recursive) with the pipeline's own model and
preprocessing, without any service. One JSON object per line and image:
  {"path": ..., "model": ..., "topk": [{"class_index": i, "category": ..., "confidence": p}, ...]}
or, for a file that cannot be classified, {"path": ..., "error": "..."}; the run goes on.
Exit status 1 if any image failed, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional, Union

import torch
from tqdm import tqdm

from common.errors import ImageError
from common.imaging import find_images
from consumer.engines import ENGINES
from consumer.images import load_tensor
from consumer.model import Classifier, WeightsError, load_classifier
from settings import Settings


def expand(paths: list[Path]) -> Iterator[Path]:
    """Files as given; folders as every image file below them."""
    for path in paths:
        if path.is_dir():
            yield from find_images(path)
        else:
            yield path


def _load(path: Path, settings: Settings) -> Union[torch.Tensor, str]:
    try:
        return load_tensor(path.read_bytes(), settings.max_image_pixels, settings.fast_decode)
    except ImageError as exc:
        return str(exc)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"


def classify_paths(classifier: Classifier, paths: list[Path], settings: Settings, batch_size: int) -> Iterator[dict]:
    """One result dict per path, in order; decoding runs in a thread pool, the model per batch."""
    with ThreadPoolExecutor(settings.decode_workers) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            loaded = list(pool.map(lambda p: _load(p, settings), chunk))
            good = [t for t in loaded if isinstance(t, torch.Tensor)]
            topks = iter(classifier.predict(torch.stack(good)) if good else [])
            for path, item in zip(chunk, loaded):
                if isinstance(item, torch.Tensor):
                    model = f"{classifier.name}@{classifier.version}" if classifier.version else classifier.name
                    yield {"path": str(path), "model": model, "topk": [t.as_dict() for t in next(topks)]}
                else:
                    yield {"path": str(path), "error": item}


def _classifier(settings: Settings, ref: Optional[str]) -> Classifier:
    """--model NAME[@N]: a built-in model, or a registered version (NAME alone: production)."""
    from settings import BUILTIN_MODELS

    if ref is None or ref in BUILTIN_MODELS:
        return load_classifier(settings.model_copy(update={"model_name": ref or settings.model_name}))
    from consumer.model import load_registered
    from db import registry
    from db.connection import in_transaction

    name, version = registry.parse_ref(ref)
    return load_registered(settings, in_transaction(settings, lambda conn: registry.get(conn, name, version)))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m consumer.classify", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ap.add_argument("--top-k", type=int, help="classes per image (default TOP_K)")
    ap.add_argument("--weights", type=Path, help="state_dict file (default MODEL_WEIGHTS)")
    ap.add_argument("--engine", choices=ENGINES, help="inference engine (default MODEL_ENGINE)")
    ap.add_argument("--batch-size", type=int, help="images per model call (default BATCH_SIZE)")
    ap.add_argument(
        "--model",
        metavar="NAME[@N]",
        help="a built-in model or one from the registry (default MODEL_NAME; NAME alone: its production version)",
    )
    args = ap.parse_args(argv)
    overrides = {
        k: v
        for k, v in {"top_k": args.top_k, "model_weights": args.weights, "model_engine": args.engine}.items()
        if v is not None
    }
    settings = Settings(**overrides)
    try:
        classifier = _classifier(settings, args.model)
    except (WeightsError, ValueError) as exc:  # ValueError: db.registry.RegistryError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = list(expand(args.paths))
    failed = 0
    with tqdm(total=len(paths), unit="img", disable=not sys.stderr.isatty()) as bar:
        for result in classify_paths(classifier, paths, settings, args.batch_size or settings.batch_size):
            failed += "error" in result
            print(json.dumps(result, ensure_ascii=False), flush=True)
            bar.update(1)
    return 1 if failed else 0


if __name__ == "__main__":
    from common import cli

    cli.run(main)
