"""Heads: what turns the trunk's output into one model's categories. A worker runs the trunk
(SqueezeNet's `features`, consumer/trunk.py) once per image and every head it serves after it,
so a second model or a shadow version costs its head, not a second network
(benchmarks/heads.py measures it; docs/models/serving.md has the figures).

Three kinds, each a small function of what the trunk gave:
- `ConvHead`: SqueezeNet's own classifier (1x1 convolution -> ReLU -> global average pool) on
  the feature map. ImageNet's 1000 classes are one; a version trained with frozen features
  (`python -m training fit`) is another. Run in torch with the network's own operations: as
  fast as ONNX Runtime for the 1000-class head, and far cheaper than a graph call for a small
  one (the comparison is in benchmarks/HISTORY.md, "Heads on one trunk").
- `MapHead`: a category map (`python -m training map`): a category's probability is the sum
  of its ImageNet classes' probabilities; classes the map leaves out count for no category
  (so a photo of something unmapped has a low confidence, not a wrong certainty).
- `LinearHead`: a linear classifier on the image's embedding (registry kind `linear`), trained
  from the stored embeddings without downloading a photo.
- `MixHead`: a map that learned (`fit --init-from NAME@N`): each ImageNet class spreads its
  probability over the categories (and "none") by learned shares, started from the map.

Every head returns probabilities [N, C]: what the rows' confidences are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class TopK:
    class_index: int
    category: str
    confidence: float

    def as_dict(self) -> dict:
        return {"class_index": self.class_index, "category": self.category, "confidence": self.confidence}


class TrunkOutputs(Protocol):
    """What a head may ask of one chunk of images (consumer/serving.py computes each once)."""

    def features(self, trunk: str) -> torch.Tensor: ...  # [N, 512, 13, 13] of that trunk

    def imagenet_logits(self, trunk: str) -> torch.Tensor: ...  # [N, 1000]: that trunk's ImageNet head

    def logits(self, head: ConvHead) -> torch.Tensor: ...  # head.logits(its trunk's features), once

    def embedding(self, trunk: str) -> torch.Tensor: ...  # [N, 512]: pooled features, unit length


class Head(Protocol):
    trunk: str  # the key of the trunk it reads (consumer/trunk.py)
    categories: list[str]

    def probabilities(self, outputs: TrunkOutputs) -> torch.Tensor: ...


class ConvHead:
    """SqueezeNet's classifier: dropout (a no-op when serving) -> conv 1x1 -> ReLU -> mean."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, categories: Sequence[str], trunk: str):
        if weight.shape[0] != len(categories):
            raise ValueError(f"a head of {weight.shape[0]} outputs for {len(categories)} categories")
        self.weight = weight.detach().reshape(weight.shape[0], -1, 1, 1).float().contiguous()
        self.bias = bias.detach().float().contiguous()
        self.categories, self.trunk = list(categories), trunk

    @classmethod
    def of(cls, state: dict, categories: Sequence[str], trunk: str) -> ConvHead:
        """From a torchvision SqueezeNet state_dict (its `classifier.1` convolution)."""
        return cls(state["classifier.1.weight"], state["classifier.1.bias"], categories, trunk)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """features [N, 512, H, W] -> logits [N, C], what the full network's forward gives."""
        with torch.inference_mode():
            out = torch.relu_(F.conv2d(features, self.weight, self.bias))  # the network's own ops
            return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def probabilities(self, outputs: TrunkOutputs) -> torch.Tensor:
        return torch.softmax(outputs.logits(self), dim=1)


def parse_class_map(rows: Sequence[tuple[int, str]]) -> tuple[list[str], torch.Tensor]:
    """(ImageNet class index, category) pairs -> (sorted categories, index [1000] of each
    class's category, -1 for a class the map leaves out). A class mapped twice is refused."""
    categories = sorted({c for _, c in rows})
    position = {c: i for i, c in enumerate(categories)}
    index = torch.full((IMAGENET_CLASSES,), -1, dtype=torch.long)
    for cls, category in rows:
        if not 0 <= cls < IMAGENET_CLASSES:
            raise ValueError(f"class index {cls} is not an ImageNet class (0-{IMAGENET_CLASSES - 1})")
        if index[cls] >= 0 and categories[index[cls]] != category:
            raise ValueError(f"class {cls} is mapped to both {categories[index[cls]]!r} and {category!r}")
        index[cls] = position[category]
    return categories, index


class MapHead:
    """Category probability = the sum of its ImageNet classes' probabilities."""

    def __init__(self, categories: Sequence[str], class_category: torch.Tensor, trunk: str):
        self.categories, self.trunk = list(categories), trunk
        mapped = class_category >= 0
        # [1000, C] membership matrix: probabilities @ members sums each category's classes
        self.members = torch.zeros(IMAGENET_CLASSES, len(self.categories))
        self.members[mapped.nonzero().flatten(), class_category[mapped]] = 1.0

    def probabilities(self, outputs: TrunkOutputs) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(outputs.imagenet_logits(self.trunk), dim=1) @ self.members


class MixHead:
    """Each ImageNet class's probability shared out over the categories and "none" (the last
    row) by softmax(shares[:, class]); a temperature on the ImageNet logits. From a map:
    shares start at the map's choice (training/from_map.py trains them)."""

    def __init__(self, shares: torch.Tensor, log_temperature: torch.Tensor, categories: Sequence[str], trunk: str):
        if shares.shape != (len(categories) + 1, IMAGENET_CLASSES):
            raise ValueError(f"shares of shape {tuple(shares.shape)} for {len(categories)} categories (+ none)")
        self.categories, self.trunk = list(categories), trunk
        self.mix = torch.softmax(shares.detach().float(), dim=0)[:-1].T.contiguous()  # [1000, C]
        self.temperature = float(torch.exp(log_temperature.detach().float()))

    def probabilities(self, outputs: TrunkOutputs) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(outputs.imagenet_logits(self.trunk) / self.temperature, dim=1) @ self.mix


class LinearHead:
    """A linear classifier on the image's embedding (the trunk's pooled output at unit length,
    what image_embeddings stores): trained from stored embeddings, with no photo downloaded
    (training/from_embeddings.py)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, categories: Sequence[str], trunk: str):
        if weight.shape != (len(categories), 512) or bias.shape != (len(categories),):
            raise ValueError(f"a linear head of shape {tuple(weight.shape)} for {len(categories)} categories")
        self.weight, self.bias = weight.detach().float().contiguous(), bias.detach().float().contiguous()
        self.categories, self.trunk = list(categories), trunk

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(embeddings, self.weight, self.bias)

    def probabilities(self, outputs: TrunkOutputs) -> torch.Tensor:
        with torch.inference_mode():
            return torch.softmax(self.logits(outputs.embedding(self.trunk)), dim=1)


def top_k(probs: torch.Tensor, categories: Sequence[str], k: int) -> list[list[TopK]]:
    """Per image, the k most probable categories, highest first."""
    conf, idx = probs.topk(min(k, len(categories)), dim=1)
    return [
        [TopK(int(i), categories[int(i)], float(c)) for c, i in zip(crow, irow)]
        for crow, irow in zip(conf.tolist(), idx.tolist())
    ]
