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
fire module's weights scaled, so its trunk key differs. Each round passes over the same
preprocessed dev photos in chunks of INFER_CHUNK_SIZE on TORCH_THREADS threads, as a worker's
inference thread runs them, every configuration taking its turn on each chunk; median and
spread over rounds per configuration, and each one's ratio to ImageNet alone (the median of
the per-round ratios), besides the in-call ratio: within the same calls, the time of every
served version over ImageNet's own (trunk and head), which this noisy kind of machine cannot
blur (rounds of the same configuration differ by up to ±15%).

    python -m benchmarks.heads [--images 200] [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks.cpu import model_name as cpu_model
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


def one_round(
    sets: dict[str, ModelSet], chunks: list[torch.Tensor], turn: int
) -> dict[str, tuple[float, float, float]]:
    """{configuration: (process CPU ms, wall ms) per image} over `chunks`, the configurations
    taking turns on each chunk in a seeded random order, so that a noisy neighbour, a clock
    change or the one before it (a second ONNX Runtime session's threads still spinning) hits
    all of them alike: the ratios are what is compared."""
    names, rng = list(sets), random.Random(turn)
    cpu, wall = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    first, heads = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for chunk in chunks:
        for name in rng.sample(names, len(names)):  # neither the first place nor a neighbour is fixed
            c, w = time.process_time(), time.perf_counter()
            predictions = sets[name].predict(chunk)
            cpu[name] += time.process_time() - c
            wall[name] += time.perf_counter() - w
            first[name] += predictions[0].seconds  # ImageNet's: the trunk and its head
            heads[name] += sum(p.seconds for p in predictions)
    images = sum(len(c) for c in chunks)
    return {n: (cpu[n] * 1000 / images, wall[n] * 1000 / images, heads[n] / first[n]) for n in names}


def measure(sets: dict[str, ModelSet], chunks: list[torch.Tensor], rounds: int) -> dict[str, dict[str, list]]:
    """{configuration: {"cpu": [ms per image per round], "wall": [...], "in_call": [...]}}."""
    for models in sets.values():
        models.predict(chunks[0])  # warm-up: first calls allocate
    out = {name: {"cpu": [], "wall": [], "in_call": []} for name in sets}
    for r in range(rounds):
        for name, (c, w, ratio) in one_round(sets, chunks, r).items():
            out[name]["cpu"].append(c)
            out[name]["wall"].append(w)
            out[name]["in_call"].append(ratio)
        print(
            f"round {r + 1}/{rounds}: " + ", ".join(f"{n} {f['cpu'][-1]:.2f}" for n, f in out.items()), file=sys.stderr
        )
    return out


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
    # two phases: a second trunk's ONNX Runtime threads keep spinning after each call, which
    # would slow whatever runs next; so the own-trunk configuration runs after the others,
    # beside ImageNet alone again, and its ratio is to that phase's ImageNet
    own = "imagenet+own_trunk_shadow"
    shared = measure({n: m for n, m in sets.items() if n != own}, chunks, args.rounds)
    second = measure({"imagenet": sets["imagenet"], own: sets[own]}, chunks, args.rounds)
    figures = {**shared, own: second[own]}
    baseline = {n: (second if n == own else shared)["imagenet"]["cpu"] for n in figures}
    result = {
        "machine": {
            "cpu": cpu_model(),
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
                "median": round(statistics.median(f["cpu"]), 3),
                "min": round(min(f["cpu"]), 3),
                "max": round(max(f["cpu"]), 3),
                "wall_ms_median": round(statistics.median(f["wall"]), 3),
                "ratio_to_imagenet": round(statistics.median(x / b for x, b in zip(f["cpu"], baseline[name])), 3),
                # the same calls timed inside: every served version's time over ImageNet's (trunk
                # and head) in the same predict(), so the machine's noise cancels
                "in_call_ratio": round(statistics.median(f["in_call"]), 3),
            }
            for name, f in figures.items()
        },
        "goals": {"imagenet+shadow_head": 1.05, "imagenet+3_heads": 1.1},
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
