"""What users would pick instead of this pipeline: Ray Data's `map_batches` over the same
photos, with the same decode (consumer.images.load_tensor) and the same ONNX graph, ONNX
Runtime on one thread per actor, one actor per core. Reads local files (no S3, Kafka or
database: an easier job than the pipeline's). Prints images/s, also per core, as JSON.

Optional: `pip install 'ray[data]'` (not a dependency of the project).

    python -m benchmarks.ray_peer [--copies 6] [--engine onnxruntime|onnxruntime-int8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from common.imaging import find_images
from settings import Settings


def graph_path(settings: Settings) -> Path:
    """The worker's own ONNX graph (exported, and quantised for int8, as a worker would)."""
    from consumer.engines import ensure_exported, onnx_cache_path
    from consumer.weights import int8_quantiser, load_base_model

    model, weights_id, _ = load_base_model(settings)
    path = ensure_exported(model, onnx_cache_path(settings.model_cache_dir, settings.model_name, weights_id))
    return int8_quantiser(settings)(path) if settings.model_engine == "onnxruntime-int8" else path


class Classify:
    def __init__(self, graph: str, max_pixels: int, fast: bool):
        from consumer.engines import onnx_session

        self.session = onnx_session(Path(graph), 1)
        self.max_pixels, self.fast = max_pixels, fast

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        from consumer.images import load_tensor

        x = np.stack([load_tensor(b, self.max_pixels, self.fast).numpy() for b in batch["bytes"]])
        logits = self.session.run(None, {"input": x})[0]
        return {"path": batch["path"], "class_index": logits.argmax(1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.ray_peer", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--copies", type=int, default=6, help="times the dev photos are read (6: 3,000 images)")
    ap.add_argument("--engine", choices=["onnxruntime", "onnxruntime-int8"], default="onnxruntime")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args(argv)
    try:
        import ray
    except ImportError:
        sys.exit("Ray Data is not installed: pip install 'ray[data]'")
    cores = os.cpu_count() or 1
    settings = Settings(model_engine=args.engine)
    paths = [str(p) for p in find_images(settings.shared_dir / "images" / "dev")] * args.copies
    graph = str(graph_path(settings))
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        # reading is light: one read task at a time, asking no CPU (the actors hold every core;
        # read tasks asking for one never ran, and unbounded CPU-less ones started ~90 processes)
        ds = ray.data.read_binary_files(
            paths, include_paths=True, ray_remote_args={"num_cpus": 0}, concurrency=1, override_num_blocks=60
        )
        started = time.perf_counter()
        rows = ds.map_batches(
            Classify,
            fn_constructor_args=(graph, settings.max_image_pixels, settings.fast_decode),
            batch_size=args.batch_size,
            concurrency=cores,
            num_cpus=1,
        ).count()
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    out = {
        "machine": f"{platform.machine()} {cores} cores ({platform.node()})",
        "ray": ray.__version__,
        "engine": args.engine,
        "images": rows,
        "seconds": round(seconds, 1),
        "img_s": round(rows / seconds, 1),
        "img_s_per_core": round(rows / seconds / cores, 1),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
