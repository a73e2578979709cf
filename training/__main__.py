"""python -m training — train SqueezeNet on your own categories, version it, roll it out.

    python -m training fit DATA --name NAME [--unfreeze N] [--val-fraction 0.2] [--seed 0]
    python -m training fit --labels CSV --name NAME      # image_key,category rows of classified images:
                                                         # from their stored embeddings, else from S3_BUCKET
    python -m training fit --from-labels NAME            # the labels given in the viewer for project NAME
    python -m training export NAME DIR [--images LOCAL]  # those labels as a folder in fit's layout
    python -m training map NAME --classes CSV            # categories as groups of ImageNet classes
    python -m training fit DATA --name NAME --init-from NAME@N   # a map (or mix) that learns from DATA
    python -m training list [NAME]
    python -m training show NAME[@N]
    python -m training promote NAME@N                    # workers switch to it within MODEL_POLL_S
    python -m training shadow NAME@N                     # workers also run it; rows in shadow_predictions
    python -m training retire NAME@N
    python -m training compare NAME                      # shadow vs production agreement, extra CPU

DATA holds one folder per category (DATA/<category>/*.jpg). Each `fit` or `map` makes an
immutable version NAME@N (weights, categories, metrics, hashes) in S3 (MODEL_BUCKET/MODEL_PREFIX)
and in the `models` table, as a candidate. Rollback is promoting the previous version again.
Exit status: 0 done, 1 bad training input (or base weights), 2 a registry request that cannot be
done or arguments that cannot work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional


def _fit(args, settings) -> int:
    """fit: decode the photos, split them, train (a network, or with --init-from a mix from a
    map or mix version), measure on the validation photos and register."""
    import torch

    from consumer.weights import WeightsError, load_base_model
    from db.registry import RegistryError
    from training import arguments, class_map, dataset, labels_csv, maps

    try:
        start = maps.resolve_start(settings, args.init_from) if args.init_from else None
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.labels and not (args.unfreeze or start or args.from_images):
        from training import from_embeddings

        try:
            candidate = from_embeddings.try_fit(args, settings)
        except (dataset.DatasetError, WeightsError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if candidate is not None:
            return _register(args, settings, candidate)
    try:
        if args.labels:
            fetch = labels_csv.fetcher(settings.s3_client(), settings.s3_bucket, settings.max_image_bytes)
            items = labels_csv.from_labels_csv(args.labels, fetch)
        else:
            items = dataset.from_folder(args.data, settings.max_image_bytes)
        print(f"decoding {len(items)} files…", file=sys.stderr)
        ds = dataset.load(items, settings.max_image_pixels, settings.max_image_aspect, settings.decode_workers)
        if start:
            class_map.check_categories(start.mv.categories, ds.categories, str(args.labels or args.data))
        labels = [label for _, label in ds.images]
        train_idx, val_idx = dataset.split(labels, args.val_fraction, args.seed)
        base_name = start.mv.base_model if start else arguments.BASE_MODEL
        base, source, weights_id = load_base_model(settings, base_name)
    except (dataset.DatasetError, WeightsError) as exc:  # WeightsError: MODEL_WEIGHTS missing or not SqueezeNet's
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(ds.categories)} categories, {len(train_idx)} training and {len(val_idx)} validation images:")
    print(dataset.describe(ds))
    torch.set_num_threads(settings.torch_threads)
    base_weights = {"source": source, "id": weights_id}
    if start:
        print(f"starting from {start.mv.ref} ({start.mv.kind} of {len(start.mv.categories)} categories)")
        candidate = maps.train_mix(args, base, base_weights, ds, labels, train_idx, val_idx, start, _progress())
    else:
        candidate = _train_network(args, base, base_name, base_weights, ds, labels, train_idx, val_idx)
    return _register(args, settings, candidate)


def _labels_file(settings, name: str):
    """A temporary CSV of project NAME's labels, or the exit status after a one-line error."""
    from training.dataset import DatasetError
    from training.from_labels import LabelsUnavailable, labels_file

    try:
        return labels_file(settings, name)
    except LabelsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _fit_from_labels(args, settings) -> int:
    """fit --from-labels NAME: NAME's labels from the viewer, trained as `fit --labels` would."""
    args.labels = _labels_file(settings, args.from_labels)
    if isinstance(args.labels, int):
        return args.labels
    try:
        print(f"{args.from_labels}: labels from the viewer", file=sys.stderr)
        return _fit(args, settings)
    finally:
        args.labels.unlink(missing_ok=True)


def _export(args, settings) -> int:
    """export: the viewer's labels as DIR/<category>/<file> (training/export_labels.py)."""
    from training import export_labels, labels_csv
    from training.dataset import DatasetError

    if args.images is not None and not args.images.is_dir():
        print(f"error: --images {args.images} is not a folder", file=sys.stderr)
        return 2
    path = _labels_file(settings, args.name)
    if isinstance(path, int):
        return path
    try:
        rows = labels_csv.read_labels(path)
    finally:
        path.unlink(missing_ok=True)
    fetch = labels_csv.fetcher(settings.s3_client(), settings.s3_bucket, settings.max_image_bytes)
    try:
        done = export_labels.export(rows, args.dir, args.images, fetch)
    except (DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, reason in done["failed"]:
        print(f"not exported: {key[:200]!r}: {reason}", file=sys.stderr)
    print(
        f"{len(rows)} labels into {args.dir}: {done['linked']} linked, {done['downloaded']} downloaded, "
        f"{len(done['failed'])} failed"
    )
    return 1 if done["failed"] else 0


def _register(args, settings, candidate) -> int:
    from training import register

    mv, manifest = register.register(settings, args.name, candidate)
    if args.report_dir:
        args.report_dir.mkdir(parents=True, exist_ok=True)
        (args.report_dir / "report.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        (args.report_dir / "confusion.png").write_bytes(candidate.files["confusion.png"])
    register.announce(mv)
    return 0


def _train_network(args, base, base_name: str, base_weights: dict, ds, labels, train_idx, val_idx):
    """fit without --init-from: SqueezeNet with a new head for DATA's categories (training/train.py)."""
    import io

    import torch

    from common import artefacts
    from training import evaluation, register, train

    result = train.fit(
        base,
        base_name,
        [img for img, _ in ds.images],
        labels,
        train_idx,
        val_idx,
        len(ds.categories),
        train.FitOptions(unfreeze=args.unfreeze, seed=args.seed, patience=args.patience, max_epochs=args.max_epochs),
        progress=_progress(),
    )
    logits = train.predict_logits(result.model, [img for img, _ in ds.images], val_idx)
    measured = evaluation.metrics(logits, [labels[i] for i in val_idx], ds.categories)
    measured.update(evaluation.run_facts(result, ds, len(train_idx), args), unfreeze=args.unfreeze)
    print(evaluation.render_text(measured, ds.counts(), result.seconds))
    buf = io.BytesIO()
    torch.save(result.model.state_dict(), buf)
    return register.Candidate(
        "network",
        base_name,
        ds.categories,
        buf.getvalue(),
        measured,
        ds.fingerprint,
        {"base_weights": base_weights},
        {artefacts.CONFUSION_PNG: evaluation.confusion_png(measured)},
    )


def _map(args, settings) -> int:
    """map: register a category map (exit 1 on a bad CSV, --eval folder or base weights)."""
    from consumer.weights import WeightsError
    from training import dataset, maps, register

    try:
        candidate = maps.map_candidate(args, settings)
    except (dataset.DatasetError, WeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    mv, _ = register.register(settings, args.name, candidate)
    register.announce(mv)
    return 0


def _progress():
    """A line per epoch, rewritten in place on a terminal."""
    tty = sys.stderr.isatty()

    def show(phase: str, epoch: int, train_loss: float, val_loss: float) -> None:
        end = "\r" if tty else "\n"
        print(
            f"  {phase} epoch {epoch:>3}: train loss {train_loss:.4f}, validation loss {val_loss:.4f}",
            end=end,
            file=sys.stderr,
            flush=True,
        )

    return show


def main(argv: Optional[list[str]] = None) -> int:
    from settings import BUILTIN_MODELS
    from training import arguments

    ap = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="train a new version on a labelled folder (or --labels CSV)")
    fit.add_argument("data", nargs="?", type=Path, help="folder with one sub-folder per category")
    fit.add_argument("--labels", type=Path, help="CSV of image_key,category for images in S3_BUCKET")
    fit.add_argument(
        "--from-labels",
        metavar="NAME",
        type=arguments.new_model_name,
        help="the labels given in the viewer for the labelling project NAME (--name defaults to NAME)",
    )
    fit.add_argument(
        "--name",
        type=arguments.new_model_name,
        help="model name (MODEL_NAME of the workers that serve it)",
    )
    fit.add_argument(
        "--unfreeze",
        type=arguments.whole_number(0, arguments.FIRE_MODULES),
        default=0,
        help=f"also fine-tune the last N fire modules (0-{arguments.FIRE_MODULES})",
    )
    fit.add_argument("--val-fraction", type=arguments.fraction, default=0.2, help="between 0 and 1")
    fit.add_argument("--seed", type=arguments.whole_number(0, arguments.MAX_SEED), default=0)
    fit.add_argument(
        "--patience",
        type=arguments.whole_number(1),
        default=10,
        help="epochs without a better validation loss (the photos' head; a linear head on stored embeddings uses 50)",
    )
    fit.add_argument(
        "--max-epochs",
        type=arguments.whole_number(1),
        default=200,
        help="(the photos' head; a linear head on stored embeddings: 2000 full-batch steps at most)",
    )
    fit.add_argument(
        "--from-images",
        action="store_true",
        help="with --labels: download and decode the photos even when every key has a stored embedding "
        "(a network head instead of a linear one on the embeddings)",
    )
    fit.add_argument("--report-dir", type=arguments.report_dir, help="also write report.json and confusion.png here")
    fit.add_argument(
        "--init-from",
        metavar="NAME@N",
        help="train a mix from this map or mix version on the photos' ImageNet logits (DATA's categories: the "
        "map's, or some of them), instead of a new network head",
    )
    mp = sub.add_parser("map", help="register a category map: your categories as groups of ImageNet classes")
    mp.add_argument(
        "name",
        metavar="NAME",
        type=arguments.new_model_name,
        help="model name (MODEL_NAME of the workers that serve it)",
    )
    mp.add_argument(
        "--classes",
        required=True,
        type=Path,
        metavar="CSV",
        help="a header and a row per ImageNet class (like ../shared/images/coarse.csv): the class_index column "
        "(0-999) and the category column, the one named `category`, else `coarse`, else the last column",
    )
    mp.add_argument("--base", choices=BUILTIN_MODELS, default=arguments.BASE_MODEL, help="whose ImageNet classes")
    mp.add_argument("--eval", type=Path, metavar="DATA", help="measure the map on a labelled folder DATA/<category>/*")
    exp = sub.add_parser("export", help="the viewer's labels of project NAME as a folder DIR/<category>/<file>")
    exp.add_argument("name", type=arguments.model_name)
    exp.add_argument("dir", type=Path)
    exp.add_argument(
        "--images", type=Path, help="link to the photos under this folder (as uploaded) instead of downloading"
    )
    lst = sub.add_parser("list", help="versions and their stages")
    lst.add_argument("name", nargs="?", type=arguments.model_name)
    for command, what in (
        ("show", "one version (default: production, else latest)"),
        ("promote", "make NAME@N the production version"),
        ("shadow", "run NAME@N beside production on every batch"),
        ("retire", "stop serving NAME@N"),
    ):
        sub.add_parser(command, help=what).add_argument("ref", metavar="NAME[@N]")
    cmp_ = sub.add_parser("compare", help="agreement of the shadow version with production")
    cmp_.add_argument("name", type=arguments.model_name)
    cmp_.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.command == "fit" and sum(x is not None for x in (args.data, args.labels, args.from_labels)) != 1:
        ap.error("fit needs one of DATA (a folder), --labels CSV or --from-labels NAME")
    if args.command == "fit":
        args.name = args.name or args.from_labels
        if args.name is None:
            ap.error("fit needs --name NAME")
    if args.command == "fit" and args.init_from and args.unfreeze:
        ap.error("--unfreeze fine-tunes a network; --init-from trains a mix on the ImageNet logits: not both")

    from settings import get_settings

    settings = get_settings()
    if args.command == "fit" and args.from_labels:
        return _fit_from_labels(args, settings)
    if args.command == "fit":
        return _fit(args, settings)
    if args.command == "map":
        return _map(args, settings)
    if args.command == "export":
        return _export(args, settings)
    from training import commands

    if args.command == "compare":
        return commands.compare(args, settings)
    return commands.registry_command(args, settings)


if __name__ == "__main__":
    from common import cli

    cli.run(main)
