"""What a trained version is worth, computed on its validation images: top-1 / top-5,
per-category precision, recall and F1, the confusion matrix (JSON and a PNG), images per
category, training time. Stored with the version (manifest and registry) and printed."""

from __future__ import annotations

import io
from typing import Optional

import torch
from PIL import Image, ImageDraw, ImageFont


def metrics(logits: torch.Tensor, labels: list[int], categories: list[str]) -> dict:
    y = torch.tensor(labels)
    n = len(categories)
    k = min(5, n)
    topk = logits.topk(k, dim=1).indices
    pred = topk[:, 0]
    confusion = torch.zeros(n, n, dtype=torch.long)
    for t, p in zip(y.tolist(), pred.tolist()):
        confusion[t, p] += 1
    per = {}
    for i, c in enumerate(categories):
        tp = int(confusion[i, i])
        predicted, actual = int(confusion[:, i].sum()), int(confusion[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per[c] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": actual}
    return {
        "val_images": len(labels),
        "top1": round(float((pred == y).float().mean()), 4),
        f"top{k}": round(float((topk == y[:, None]).any(dim=1).float().mean()), 4),
        "per_category": per,
        "confusion": confusion.tolist(),
        "categories": categories,
    }


def run_facts(result, ds, train_images: int, args) -> dict:
    """What a fit run did, stored beside its metrics: images, epochs, time, seed and split.
    `result` is a training result (train.FitResult or from_map's) with seconds, epochs,
    best_epoch and val_loss; `ds` the decoded dataset; `args` fit's parsed arguments."""
    return {
        "train_images": train_images,
        "images_per_category": ds.counts(),
        "training_seconds": round(result.seconds, 2),
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "val_loss": round(result.val_loss, 4),
        "seed": args.seed,
        "val_fraction": args.val_fraction,
        "skipped": ds.skipped,
    }


def render_text(m: dict, counts: dict[str, int], seconds: Optional[float], heading: str = "validation") -> str:
    """The metrics as a table; `seconds`: the training time (None: nothing was trained)."""
    top_k = next(k for k in m if k.startswith("top") and k != "top1")
    trained = "no training" if seconds is None else f"trained in {seconds:.1f}s"
    lines = [
        f"{heading}: {m['val_images']} images, top-1 {m['top1']:.1%}, {top_k} {m[top_k]:.1%}; {trained}",
        f"  {'category':<24} {'images':>6} {'precision':>9} {'recall':>7} {'F1':>6}",
    ]
    for c, v in m["per_category"].items():
        lines.append(f"  {c!r:<24} {counts.get(c, 0):>6} {v['precision']:>9.2f} {v['recall']:>7.2f} {v['f1']:>6.2f}")
    lines.append("  confusion (rows: true, columns: predicted, in the order above):")
    lines += ["    " + " ".join(f"{x:>4}" for x in row) for row in m["confusion"]]
    return "\n".join(lines)


def confusion_png(m: dict, cell: int = 36) -> bytes:
    """The confusion matrix as a heat map; rows and columns numbered as in the category
    list printed beside it (names of any script or length stay out of the picture)."""
    conf, cats = m["confusion"], m["categories"]
    n = len(cats)
    margin = 40
    img = Image.new("RGB", (margin + n * cell + 10, margin + n * cell + 10), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    for i in range(n):
        total = max(1, sum(conf[i]))
        draw.text((margin + i * cell + cell // 3, 12), str(i), fill="black", font=font)
        draw.text((12, margin + i * cell + cell // 3), str(i), fill="black", font=font)
        for j in range(n):
            share = conf[i][j] / total
            shade = int(255 - 200 * share)
            color = (shade, shade, 255) if i == j else (255, shade, shade)
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 1, margin + (i + 1) * cell - 1)
            draw.rectangle(box, fill=color, outline=(220, 220, 220))
            if conf[i][j]:
                draw.text((box[0] + 4, box[1] + cell // 3), str(conf[i][j]), fill="black", font=font)
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()
