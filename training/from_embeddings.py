"""`training fit --labels CSV` from the stored embeddings: when every labelled key has one (the
workers store one per image, db/embeddings.py), no photo is downloaded and none goes through
the network: a linear classifier (consumer/heads.py, LinearHead) is trained on the 512-d
embeddings, in seconds. Served as a head on the base trunk like any frozen version.

Time for 10,000 labelled keys against downloading and decoding them:
benchmarks/train_from_embeddings.py (figures in docs/models/categories.md).
"""

from __future__ import annotations

import copy
import hashlib
import io
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import psycopg2
import torch
from torch import nn

from common.keys import stored_key
from training.train import class_weights, seed_everything


@dataclass
class LinearOptions:
    seed: int = 0
    max_epochs: int = 2000
    patience: int = 50
    lr: float = 0.05
    weight_decay: float = 1e-4


@dataclass
class LinearResult:
    weight: torch.Tensor  # [C, 512]
    bias: torch.Tensor  # [C]
    seconds: float
    epochs: int
    best_epoch: int
    val_loss: float


@dataclass
class Embedded:
    """The labelled keys' stored embeddings, in the CSV's order (what dataset.Dataset is for photos)."""

    keys: list[str]
    vectors: torch.Tensor  # [N, 512]
    labels: list[int]
    categories: list[str]
    trunk: str
    fingerprint: str
    skipped: list = field(default_factory=list)  # none: every key had its embedding

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(self.categories, 0)
        for label in self.labels:
            out[self.categories[label]] += 1
        return out


def lookup(conn, pairs: list[tuple[str, str]], trunk: str) -> tuple[Optional[Embedded], int]:
    """(the labelled keys' embeddings, 0) when every key has one made by `trunk`; else (None,
    how many have none)."""
    from db.embeddings import vectors_of

    keys = [stored_key(k) for k, _ in pairs]
    found = vectors_of(conn, list(dict.fromkeys(keys)), trunk)
    missing = sum(1 for k in keys if k not in found)
    if missing:
        return None, missing
    categories = sorted({c for _, c in pairs})
    position = {c: i for i, c in enumerate(categories)}
    digest = hashlib.sha256(trunk.encode())
    for key, category in sorted(zip(keys, (c for _, c in pairs))):
        digest.update(f"\x1f{key}\x1e{category}".encode())
    vectors = torch.from_numpy(np.stack([found[k] for k in keys]))
    return Embedded(keys, vectors, [position[c] for _, c in pairs], categories, trunk, digest.hexdigest()), 0


def fit(
    x: torch.Tensor, y: torch.Tensor, train_idx: list[int], val_idx: list[int], classes: int, options: LinearOptions
) -> LinearResult:
    """Multinomial logistic regression on the embeddings (full batch, Adam, class weights from
    the training labels), stopped early on the validation loss; the best epoch's weights."""
    seed_everything(options.seed)
    started = time.perf_counter()
    model = nn.Linear(x.shape[1], classes)
    optimiser = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    weights = class_weights(y[train_idx].tolist(), classes)
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    xt, yt, xv, yv = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    best, best_loss, best_epoch, epoch = copy.deepcopy(model.state_dict()), float("inf"), 0, 0
    for epoch in range(1, options.max_epochs + 1):
        optimiser.zero_grad()
        loss_fn(model(xt), yt).backward()
        optimiser.step()
        with torch.no_grad():
            val_loss = float(loss_fn(model(xv), yv))
        if val_loss < best_loss - 1e-5:
            best, best_loss, best_epoch = copy.deepcopy(model.state_dict()), val_loss, epoch
        elif epoch - best_epoch >= options.patience:
            break
    return LinearResult(best["weight"], best["bias"], time.perf_counter() - started, epoch, best_epoch, best_loss)


def weights_bytes(result: LinearResult) -> bytes:
    """The artefact's model.pt: what consumer/serving.py's Loader reads for kind `linear`."""
    buf = io.BytesIO()
    torch.save({"weight": result.weight, "bias": result.bias}, buf)
    return buf.getvalue()


def try_fit(args, settings) -> Optional[object]:
    """fit --labels from the stored embeddings: the version's Candidate, or None (after saying
    why on stderr) when a labelled key has no embedding of the base trunk, and the photos
    must be downloaded. DatasetError / WeightsError for input no path can train on."""
    import sys

    from common import artefacts
    from consumer.trunk import trunk_key
    from consumer.weights import load_base_model
    from db.connection import connect
    from training import arguments, dataset, evaluation, labels_csv, register

    pairs = labels_csv.read_labels(args.labels)
    if len({c for _, c in pairs}) < 2:
        raise dataset.DatasetError(f"{args.labels} names fewer than 2 categories; training needs at least 2")
    base, source, weights_id = load_base_model(settings, arguments.BASE_MODEL)
    trunk = trunk_key(arguments.BASE_MODEL, base)
    try:
        conn = connect(settings)
        try:
            embedded, missing = lookup(conn, pairs, trunk)
        finally:
            conn.close()
    except psycopg2.Error as exc:  # down, or not migrated: the photos' path needs neither
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"the stored embeddings could not be read ({first}): downloading the photos", file=sys.stderr)
        return None
    if embedded is None:
        print(
            f"{missing} of {len(pairs)} labelled keys have no stored embedding: downloading the photos",
            file=sys.stderr,
        )
        return None
    small = [c for c, n in embedded.counts().items() if n < dataset.MIN_PER_CATEGORY]
    if small:
        raise dataset.DatasetError(f"categories with fewer than {dataset.MIN_PER_CATEGORY} images: {', '.join(small)}")
    y = torch.tensor(embedded.labels)
    train_idx, val_idx = dataset.split(embedded.labels, args.val_fraction, args.seed)
    print(
        f"{len(embedded.categories)} categories, {len(train_idx)} training and {len(val_idx)} validation images, "
        "from their stored embeddings (nothing downloaded):"
    )
    result = fit(embedded.vectors, y, train_idx, val_idx, len(embedded.categories), LinearOptions(seed=args.seed))
    with torch.no_grad():
        logits = embedded.vectors[val_idx] @ result.weight.T + result.bias
    measured = evaluation.metrics(logits, y[val_idx].tolist(), embedded.categories)
    measured.update(evaluation.run_facts(result, embedded, len(train_idx), args), trained_from="embeddings")
    print(evaluation.render_text(measured, embedded.counts(), result.seconds))
    return register.Candidate(
        "linear",
        arguments.BASE_MODEL,
        embedded.categories,
        weights_bytes(result),
        measured,
        embedded.fingerprint,
        {"base_weights": {"source": source, "id": weights_id}, "trained_from": "embeddings", "trunk": trunk},
        {artefacts.CONFUSION_PNG: evaluation.confusion_png(measured)},
    )
