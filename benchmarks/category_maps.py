"""Category maps against trained heads on fine classes none of them saw, printed as JSON (no
service): the coarse folder (../shared/images/coarse.csv over the dev photos: 240 photos, 8
categories, each photo its own fine ImageNet class), cut into folds of whole fine classes
(stratified by category; every photo held out exactly once per seed). Per held-out fold:

- map: coarse.csv's map alone (`training map`), no training;
- head: today's `fit` (training/train.py, frozen features) on the other folds;
- from_map: `fit --init-from` the map (training/from_map.py) on the other folds.

Both trained ones early-stop on a seeded 20% of their training photos, as the CLI does.
Scenarios: the photos labelled as coarse.csv says, and users whose labels disagree with the
map (the map stays coarse.csv): a whole category filed under another, part of one, and a
random 15% of the fine classes moved. Held-out photos are of fine classes no training photo
has, so all a model can carry to them is what it learnt from *other* classes; `seen_changed`
is top-1 on the training photos themselves (what it was taught, not how it generalises).

    python -m benchmarks.category_maps [--seeds 3] [--folds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.cpu import model_name as cpu_model
from benchmarks.report import emit
from benchmarks.train_and_shadow import coarse_folder
from consumer.heads import MapHead
from consumer.images import load_tensor
from consumer.weights import load_base_model
from settings import Settings
from training import class_map, dataset, from_map, train

SCENARIOS = {
    "coarse": "labels as coarse.csv: the map's own categories",
    "merged_category": "every reptile_amphibian photo labelled sea_life (a category filed under another)",
    "produce_as_plants": "fruit and vegetable photos (ImageNet 936-957) labelled nature_plant, the rest of food stays",
    "random_15pct": "a seeded 15% of the fine classes moved to another category at random (not learnable from others)",
}


def relabel(scenario: str, labels: list[int], classes: list[int], categories: list[str], seed: int) -> list[int]:
    """The scenario's labels (indices into the map's categories) of the photos."""
    at = {c: i for i, c in enumerate(categories)}
    out = list(labels)
    if scenario == "merged_category":
        out = [at["sea_life"] if y == at["reptile_amphibian"] else y for y in out]
    elif scenario == "produce_as_plants":
        out = [at["nature_plant"] if 936 <= c <= 957 else y for y, c in zip(out, classes)]
    elif scenario == "random_15pct":
        rng = random.Random(seed)
        for i in rng.sample(range(len(out)), round(0.15 * len(out))):
            out[i] = rng.choice([c for c in range(len(categories)) if c != out[i]])
    return out


def folds(labels: list[int], k: int, seed: int) -> list[list[int]]:
    """k folds of photo indices, each category dealt round-robin from a seeded shuffle."""
    rng = random.Random(seed)
    out: list[list[int]] = [[] for _ in range(k)]
    for category in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == category]
        rng.shuffle(members)
        offset = rng.randrange(k)
        for j, i in enumerate(members):
            out[(j + offset) % k].append(i)
    return out


def spread(values: list[float]) -> dict:
    return {
        "per_seed": [round(v, 4) for v in values],
        "mean": round(statistics.fmean(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "stdev": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
    }


class Bench:
    """The photos, their logits (each and its mirror) and the map, computed once."""

    def __init__(self, base, ds: dataset.Dataset, cmap: class_map.ClassMap, classes: list[int]):
        self.base, self.ds, self.cmap, self.classes = base, ds, cmap, classes
        self.images = [img for img, _ in ds.images]
        everything = list(range(len(self.images)))
        self.logits = from_map.imagenet_logits(base, self.images, everything)
        self.mirrors = from_map.imagenet_logits(base, self.images, everything, mirror=True)
        position = {c: i for i, c in enumerate(cmap.categories)}
        self.labels = [position[ds.categories[y]] for _, y in ds.images]
        self.map = MapHead(cmap.categories, cmap.class_category, "base")

    def top1(self, head, idx: list[int]) -> list[int]:
        return head.probabilities(from_map.Logits(self.logits[idx])).argmax(1).tolist()

    def fit_mix(self, y: torch.Tensor, tr: list[int], va: list[int], seed: int):
        """from_map.fit from the map, on the training photos and their mirrors (as fit does)."""
        return from_map.fit(
            torch.cat([self.logits[tr], self.mirrors[tr]]),
            y[tr].repeat(2),
            self.logits[va],
            y[va],
            from_map.start_of_map(self.cmap.class_category, len(self.cmap.categories)),
            from_map.MixOptions(seed=seed),
        )

    def fold(self, labels: list[int], held: list[int], seed: int, seconds: dict) -> dict[str, dict[int, int]]:
        """Each model's top-1 answer per photo: held-out photos, and (for seen_changed) the
        training photos."""
        y = torch.tensor(labels)
        rest = sorted(set(range(len(labels))) - set(held))
        tr, va = dataset.split([labels[i] for i in rest], 0.2, seed)
        tr, va = [rest[i] for i in tr], [rest[i] for i in va]
        started = time.perf_counter()
        mix = self.fit_mix(y, tr, va, seed)
        seconds["from_map"].append(time.perf_counter() - started)
        started = time.perf_counter()
        options = train.FitOptions(seed=seed)
        net = train.fit(self.base, "squeezenet1_1", self.images, labels, tr, va, len(self.cmap.categories), options)
        seconds["head"].append(time.perf_counter() - started)
        mixed = from_map.head(mix.shares, mix.log_temperature, self.cmap.categories)
        both = held + tr
        answers = {
            "map": self.top1(self.map, both),
            "from_map": self.top1(mixed, both),
            "head": train.predict_logits(net.model, self.images, both).argmax(1).tolist(),
        }
        return {name: dict(zip(both, a)) for name, a in answers.items()}


def scenario(bench: Bench, name: str, seeds: int, k: int, other_logits: torch.Tensor) -> dict:
    """Held-out top-1 of the three over `seeds` split seeds, `k` folds each."""
    models = ("map", "head", "from_map")
    held_out = {m: [] for m in models}
    changed_top1 = {m: [] for m in models}
    unchanged_top1 = {m: [] for m in models}
    seen_changed = {m: [] for m in models}
    seconds: dict = {"head": [], "from_map": []}
    confident = []
    for seed in range(seeds):
        labels = relabel(name, bench.labels, bench.classes, bench.cmap.categories, seed)
        changed = [i for i, (a, b) in enumerate(zip(labels, bench.labels)) if a != b]
        answers = {m: {} for m in models}
        seen = {m: [] for m in models}
        for held in folds(labels, k, seed):
            got = bench.fold(labels, held, seed, seconds)
            for m in models:
                answers[m].update({i: got[m][i] for i in held})
                seen[m] += [got[m][i] == labels[i] for i in got[m] if i not in held and i in changed]
        for m in models:
            right = {i: answers[m][i] == labels[i] for i in range(len(labels))}
            held_out[m].append(sum(right.values()) / len(labels))
            unchanged = [i for i in right if i not in changed]
            unchanged_top1[m].append(sum(right[i] for i in unchanged) / len(unchanged))
            if changed:
                changed_top1[m].append(sum(right[i] for i in changed) / len(changed))
                seen_changed[m].append(sum(seen[m]) / len(seen[m]))
        confident.append(_confident(bench, labels, seed, other_logits))
    means = {m: statistics.fmean(v) for m, v in held_out.items()}
    out = {
        "what": SCENARIOS[name],
        "photos_relabelled": len(changed),
        "held_out_top1": {m: spread(v) for m, v in held_out.items()},
        "ratios_of_means": {
            "from_map_over_map": round(means["from_map"] / means["map"], 4),
            "from_map_over_head": round(means["from_map"] / means["head"], 4),
            "head_over_map": round(means["head"] / means["map"], 4),
        },
        "fit_seconds_mean": {m: round(statistics.fmean(v), 2) for m, v in seconds.items()},
        "out_of_map_confident": spread(confident),
    }
    if changed_top1["map"]:
        out["held_out_relabelled_top1"] = {m: spread(v) for m, v in changed_top1.items()}
        out["held_out_unchanged_top1"] = {m: spread(v) for m, v in unchanged_top1.items()}
        out["seen_relabelled_top1"] = {m: spread(v) for m, v in seen_changed.items()}
    print(
        f"{name}: {out['held_out_top1']['map']['mean']} map, {out['held_out_top1']['head']['mean']} head, "
        f"{out['held_out_top1']['from_map']['mean']} from_map",
        file=sys.stderr,
    )
    return out


def _confident(bench: Bench, labels: list[int], seed: int, other_logits: torch.Tensor) -> float:
    """Share of the dev photos of classes the map leaves out that the from-map head, trained on
    all the scenario's photos, gives a category with confidence >= 0.5 (the map alone: see
    `out_of_map_confident_map`)."""
    y = torch.tensor(labels)
    tr, va = dataset.split(labels, 0.2, seed)
    mix = bench.fit_mix(y, tr, va, seed)
    head = from_map.head(mix.shares, mix.log_temperature, bench.cmap.categories)
    return float((head.probabilities(from_map.Logits(other_logits)).max(1).values >= 0.5).float().mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.category_maps",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--seeds", type=int, default=3, help="split seeds 0..N-1")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of: " + ", ".join(SCENARIOS))
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    settings = Settings()
    cores = os.cpu_count() or 1
    torch.set_num_threads(settings.torch_threads)
    shared = settings.shared_dir
    cmap = class_map.read_class_map(shared / "images" / "coarse.csv")
    with tempfile.TemporaryDirectory() as tmp:
        ds = dataset.load(
            dataset.from_folder(coarse_folder(shared, Path(tmp)), settings.max_image_bytes), settings.max_image_pixels
        )
    dev = shared / "images" / "dev"
    rows = list(csv.DictReader((dev / "labels.csv").open()))
    class_of = {r["filename"]: int(r["class_index"]) for r in rows}
    base, _, _ = load_base_model(settings, "squeezenet1_1")
    bench = Bench(base, ds, cmap, [class_of[Path(s).name] for s in ds.sources])
    others = [r for r in rows if cmap.class_category[int(r["class_index"])] < 0]
    with torch.no_grad():
        other = torch.stack(
            [load_tensor((dev / r["filename"]).read_bytes(), settings.max_image_pixels, True) for r in others]
        )
        other_logits = torch.cat([base(other[i : i + 32]) for i in range(0, len(other), 32)])
    map_confident = float((bench.map.probabilities(from_map.Logits(other_logits)).max(1).values >= 0.5).float().mean())
    options = from_map.MixOptions()
    result = {
        "machine": {"cpu": cpu_model(), "cpu_count": cores, "torch": torch.__version__},
        "data": {
            "photos": len(bench.labels),
            "categories": len(cmap.categories),
            "fine_classes": len(set(bench.classes)),
            "folds": args.folds,
            "seeds": args.seeds,
            "out_of_map_photos": len(others),
        },
        "from_map_options": {"pull": options.pull, "lr": options.lr, "smoothing": options.smoothing},
        "out_of_map_confident_map": round(map_confident, 4),
        "scenarios": {
            name: scenario(bench, name, args.seeds, args.folds, other_logits) for name in args.scenarios.split(",")
        },
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
