"""The category-map commands of python -m training:

- `map NAME --classes CSV [--base M] [--eval DATA]`: registers a version of kind "map", your
  categories as groups of ImageNet classes (training/class_map.py); no training;
- `fit DATA --name NAME --init-from NAME2@N`: trains a version of kind "mix" from a map or
  mix version on the photos' ImageNet logits (training/from_map.py).

Both register through training/register.py like any fit, so promote, shadow, compare and
rollback treat them as any other version. Exit status as fit's: 1 bad input, 2 a registry
request that cannot be done (--init-from a version that is missing or not a map or mix)."""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

import torch

from common import artefacts
from consumer.heads import MapHead
from db import registry
from training import class_map, dataset, evaluation, from_map
from training.register import Candidate

NO_EVALUATION = "no evaluation: `training map NAME --classes CSV --eval DATA` measures the map on a labelled folder"


@dataclass(frozen=True)
class Start:
    """The version `fit --init-from` starts from, and its mix."""

    mv: registry.ModelVersion
    mix: tuple[torch.Tensor, torch.Tensor]  # (mix [C+1, 1000], log temperature)


def map_candidate(args, settings) -> Candidate:
    """The version `training map` registers: the CSV's map, evaluated on --eval DATA if given.
    Raises DatasetError (the CSV, DATA) or WeightsError (the base weights, with --eval)."""
    from consumer.weights import imagenet_categories

    cmap = class_map.read_class_map(args.classes)
    print(
        f"{args.classes}: {int((cmap.class_category >= 0).sum())} ImageNet classes in {len(cmap.categories)} "
        f"categories (column {cmap.column!r}):"
    )
    print("\n".join(f"  {c!r:<28} {len(idx):>4} classes" for c, idx in cmap.classes().items()))
    metrics: dict = {"note": NO_EVALUATION}
    manifest: dict = {"classes_csv": args.classes.name, "category_column": cmap.column}
    files: dict = {}
    if args.eval:
        metrics, manifest["base_weights"] = _evaluate_map(args, settings, cmap)
        files[artefacts.CONFUSION_PNG] = evaluation.confusion_png(metrics)
    metrics["mapped_classes"] = {c: len(idx) for c, idx in cmap.classes().items()}
    manifest["map"] = cmap.readable(imagenet_categories(args.base))
    return Candidate("map", args.base, cmap.categories, cmap.artefact(), metrics, cmap.fingerprint(), manifest, files)


def _evaluate_map(args, settings, cmap: class_map.ClassMap) -> tuple[dict, dict]:
    """The map's metrics on every photo of DATA (it learns nothing from them), computed with the
    head workers serve; and the base weights they were computed with."""
    from consumer.weights import load_base_model

    ds = _decode(dataset.from_folder(args.eval, settings.max_image_bytes), settings)
    class_map.check_categories(cmap.categories, ds.categories, str(args.eval))
    labels = _labels(ds, cmap.categories)
    base, source, weights_id = load_base_model(settings, args.base)
    torch.set_num_threads(settings.torch_threads)
    images = [img for img, _ in ds.images]
    logits = from_map.imagenet_logits(base, images, list(range(len(images))))
    probs = MapHead(cmap.categories, cmap.class_category, "base").probabilities(from_map.Logits(logits))
    measured = evaluation.metrics(probs, labels.tolist(), cmap.categories)
    measured.update({"train_images": 0, "images_per_category": ds.counts(), "skipped": ds.skipped})
    print(dataset.describe(ds))
    print(evaluation.render_text(measured, ds.counts(), None, heading=f"the map on {args.eval}"))
    return measured, {"source": source, "id": weights_id}


def resolve_start(settings, ref: str) -> Start:
    """The map or mix version NAME@N and its mix, read from its verified artefact; a
    RegistryError when there is none, it is another kind, or its artefact cannot be read."""
    from common.artefacts import ArtefactError, get_verified_weights
    from db.connection import in_transaction

    name, version = registry.parse_ref(ref)
    if version is None:
        raise registry.RegistryError(f"--init-from needs a version: {name}@N")
    mv = in_transaction(settings, lambda conn: registry.get(conn, name, version))
    if mv.kind not in ("map", "mix"):
        raise registry.RegistryError(
            f"{mv.ref} is a version of kind {mv.kind}; --init-from takes a map (`python -m training map NAME "
            "--classes CSV`) or a mix (a fit --init-from)"
        )
    try:
        data = get_verified_weights(settings.s3_client(), mv.uri, mv.sha256)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if mv.kind == "map":
            return Start(mv, from_map.start_of_map(state["class_category"], len(mv.categories)))
        return Start(mv, from_map.start_of_mix(state["shares"], state["log_temperature"]))
    except ArtefactError as exc:
        raise registry.RegistryError(f"{mv.ref}: {exc}") from None
    except (KeyError, RuntimeError) as exc:
        raise registry.RegistryError(f"{mv.ref}: its artefact is not a {mv.kind}: {exc}") from None


def train_mix(args, base, base_weights: dict, ds, labels, train_idx, val_idx, start: Start, progress) -> Candidate:
    """The version `fit --init-from` registers: a mix trained on the photos' ImageNet logits (each
    training photo and its mirror, computed once), evaluated on the validation photos."""
    from consumer.weights import imagenet_categories

    categories = start.mv.categories
    y = _labels(ds, categories)
    images = [img for img, _ in ds.images]
    train_logits = torch.cat(
        [from_map.imagenet_logits(base, images, train_idx), from_map.imagenet_logits(base, images, train_idx, True)]
    )
    val_logits = from_map.imagenet_logits(base, images, val_idx)
    options = from_map.MixOptions(seed=args.seed, max_epochs=args.max_epochs, patience=args.patience)
    result = from_map.fit(train_logits, y[train_idx].repeat(2), val_logits, y[val_idx], start.mix, options, progress)
    served = from_map.head(result.shares, result.log_temperature, categories)
    measured = evaluation.metrics(served.probabilities(from_map.Logits(val_logits)), y[val_idx].tolist(), categories)
    before = from_map.head(from_map.shares_of(start.mix[0]), start.mix[1], categories)
    start_top1 = evaluation.metrics(before.probabilities(from_map.Logits(val_logits)), y[val_idx].tolist(), categories)
    moved = _moved(start.mix[0], result.shares, categories, imagenet_categories(start.mv.base_model))
    measured.update(evaluation.run_facts(result, ds, len(train_idx), args))
    measured.update(
        {
            "init_from": start.mv.ref,
            "init_top1": start_top1["top1"],
            "temperature": round(float(result.log_temperature.exp()), 4),
            "pull": options.pull,
            "moved_classes": len(moved),
        }
    )
    print(evaluation.render_text(measured, ds.counts(), result.seconds))
    print(
        f"  {start.mv.ref} alone: top-1 {start_top1['top1']:.1%} on the same photos; {len(moved)} ImageNet "
        f"class(es) moved to another category, temperature {measured['temperature']}"
    )
    buf = io.BytesIO()
    torch.save({"shares": result.shares, "log_temperature": result.log_temperature}, buf)
    manifest = {
        "base_weights": base_weights,
        "init_from": {"ref": start.mv.ref, "kind": start.mv.kind, "sha256": start.mv.sha256},
        "moved_classes": moved,
    }
    files = {artefacts.CONFUSION_PNG: evaluation.confusion_png(measured)}
    return Candidate("mix", start.mv.base_model, categories, buf.getvalue(), measured, ds.fingerprint, manifest, files)


def _moved(start: torch.Tensor, shares: torch.Tensor, categories: list[str], names: list[str]) -> list[dict]:
    """The ImageNet classes whose largest share is another row than at the start."""
    rows = [*categories, None]  # None: no category
    before, after = start.argmax(0), shares.argmax(0)
    return [
        {"class_index": i, "class_name": names[i], "from": rows[int(before[i])], "to": rows[int(after[i])]}
        for i in (before != after).nonzero().flatten().tolist()
    ]


def _labels(ds: dataset.Dataset, categories: list[str]) -> torch.Tensor:
    """Each photo's label as an index into `categories` (the map's: DATA's may be fewer)."""
    position = {c: i for i, c in enumerate(categories)}
    return torch.tensor([position[ds.categories[label]] for _, label in ds.images])


def _decode(items: list, settings) -> dataset.Dataset:
    print(f"decoding {len(items)} files…", file=sys.stderr)
    return dataset.load(items, settings.max_image_pixels, settings.max_image_aspect, settings.decode_workers)
