"""What each extra model costs a worker's model stage, now that every head shares one pass of
the trunk: CPU seconds per image (the process's, every thread) for

- `imagenet`: ImageNet's classifier alone (trunk + its head) — the baseline;
- `imagenet+shadow_head`: + a shadow version that is a head on the same trunk (a frozen-trained
  version, or a category map) — goal <= 1.05x the baseline;
- `imagenet+3_heads`: + three custom heads (two more served models and a shadow) — goal <= 1.1x;
- `imagenet+own_trunk_shadow`: + a shadow with a trunk of its own (fine-tuned with
  `--unfreeze`): what every shadow cost before heads shared the trunk (~2x).

The heads are real: a category map (../shared/images/coarse.csv) and sub-heads of ImageNet's
own classifier (8 of its classes each); the "own trunk" is the base network with its last
fire module's weights scaled, so its trunk key differs. Rounds run the configurations in
turn (ABCD ABCD ...) on the same preprocessed dev photos, chunks of INFER_CHUNK_SIZE on
TORCH_THREADS threads, as a worker's inference thread runs them; median and spread per
configuration, ratios to the baseline's median.

    python -m benchmarks.heads [--images 200] [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.report import emit
from consumer.heads import ConvHead, MapHead, parse_class_map
from consumer.images import load_tensor
from consumer.serving import Loader, ModelSet, Served
from consumer.weights import load_base_model
from settings import Settings


def _sub_head(classifier: ConvHead, start: int, trunk: str) -> ConvHead:
    """8 of ImageNet's classes as a head of their own: real weights, a custom head's size."""
    rows = slice(start, start + 8)
    return ConvHead(classifier.weight[rows], classifier.bias[rows], classifier.categories[rows], trunk)


def configurations(settings: Settings) -> dict[str, ModelSet]:
    loader = Loader(settings)
    trunk = loader.base("squeezenet1_1")
    imagenet = Served("squeezenet1_1", 0, trunk.classifier)
    rows = [
        (int(r["class_index"]), r["coarse"])
        for r in csv.DictReader(settings.shared_dir.joinpath("images", "coarse.csv").open())
    ]
    categories, index = parse_class_map(rows)
    coarse = Served("coarse", 1, MapHead(categories, index, trunk.key))
    heads = [Served(f"custom{i}", 1, _sub_head(trunk.classifier, 100 * i, trunk.key)) for i in range(3)]
    tuned, _, _ = load_base_model(settings, "squeezenet1_1")
    tuned = copy.deepcopy(tuned)
    with torch.no_grad():
        tuned.features[-1].expand3x3.weight.mul_(1.01)  # another trunk, as --unfreeze gives
    own = Served("tuned", 2, loader.network(tuned, "squeezenet1_1", trunk.classifier.categories), "shadow")
    shadow = Served("squeezenet1_1", 1, _sub_head(trunk.classifier, 400, trunk.key), "shadow")
    return {
        "imagenet": loader.model_set([imagenet], []),
        "imagenet+shadow_head": loader.model_set([imagenet], [shadow]),
        "imagenet+map_shadow": loader.model_set([imagenet], [Served(coarse.name, 1, coarse.head, "shadow")]),
        "imagenet+3_heads": loader.model_set(
            [imagenet, heads[0], heads[1]], [Served("custom1", 2, heads[2].head, "shadow")]
        ),
        "imagenet+own_trunk_shadow": loader.model_set([imagenet], [own]),
    }


def cpu_ms_per_image(models: ModelSet, chunks: list[torch.Tensor]) -> tuple[float, float]:
    """(process CPU ms, wall ms) per image for one pass over `chunks`."""
    cpu, wall = time.process_time(), time.perf_counter()
    for chunk in chunks:
        models.predict(chunk)
    images = sum(len(c) for c in chunks)
    return (time.process_time() - cpu) * 1000 / images, (time.perf_counter() - wall) * 1000 / images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.heads", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=200, help="dev photos per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    settings = Settings()
    torch.set_num_threads(settings.torch_threads)
    paths = sorted((settings.shared_dir / "images" / "dev").glob("*.JPEG"))[: args.images]
    tensors = [load_tensor(p.read_bytes(), settings.max_image_pixels, settings.fast_decode) for p in paths]
    size = settings.infer_chunk_size
    chunks = [torch.stack(tensors[i : i + size]) for i in range(0, len(tensors), size)]
    sets = configurations(settings)
    for models in sets.values():
        models.predict(chunks[0])  # warm-up: first calls allocate
    cpu: dict[str, list[float]] = {name: [] for name in sets}
    wall: dict[str, list[float]] = {name: [] for name in sets}
    for r in range(args.rounds):
        for name, models in sets.items():
            c, w = cpu_ms_per_image(models, chunks)
            cpu[name].append(c)
            wall[name].append(w)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {cpu[n][-1]:.2f}" for n in sets), file=sys.stderr)
    base = statistics.median(cpu["imagenet"])
    result = {
        "machine": {
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "setup": {
            "engine": settings.model_engine,
            "torch_threads": settings.torch_threads,
            "chunk": size,
            "images_per_round": len(tensors),
            "rounds": args.rounds,
        },
        "cpu_ms_per_image": {
            name: {
                "median": round(statistics.median(v), 3),
                "min": round(min(v), 3),
                "max": round(max(v), 3),
                "wall_ms_median": round(statistics.median(wall[name]), 3),
                "ratio_to_imagenet": round(statistics.median(v) / base, 3),
            }
            for name, v in cpu.items()
        },
        "goals": {"imagenet+shadow_head": 1.05, "imagenet+3_heads": 1.1},
    }
    emit(result, args.out)
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
