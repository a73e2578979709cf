"""The trunk: SqueezeNet's `features` (every layer up to the classifier), the network's whole
cost but its last convolution. Built once per worker in the configured engine (ONNX Runtime
by default, its graph exported once and cached on disk; int8 calibrated once), and run once
per image for every head the worker serves (consumer/heads.py).

A trunk is named by its key: the base model and the hash of the weights it was built from.
Every version trained with frozen features has the base's trunk; one fine-tuned with
`--unfreeze` changed it, so it gets a trunk of its own (and costs a second pass, which
benchmarks/heads.py measures).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from consumer.engines import Engine, build_engine, onnx_cache_path
from consumer.heads import ConvHead
from settings import Settings


class Features(nn.Module):
    """`features` under the attribute name the full network gives it, so the exported graph's
    node names are the full network's (consumer/quantize.py names layers to keep in float)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.features = model.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def features_digest(model: nn.Module) -> str:
    """A hash of the trunk's weights: equal for every version whose features were frozen."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.features.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def trunk_key(base_model: str, model: nn.Module) -> str:
    return f"{base_model}:{features_digest(model)[:16]}"


@dataclass(frozen=True)
class Trunk:
    key: str
    run: Engine  # [N, 3, 224, 224] -> [N, 512, 13, 13]
    classifier: ConvHead  # the network's own head on it (ImageNet's, for the base trunk)


def build_trunk(settings: Settings, model: nn.Module, key: str, categories: list[str], int8=None) -> Trunk:
    """The trunk of `model` in MODEL_ENGINE; `model`'s own classifier becomes its first head.
    `int8`: consumer.model.int8_quantiser's fp32 graph -> int8 graph (for onnxruntime-int8)."""
    torch.set_num_threads(settings.torch_threads)
    classifier = ConvHead.of(model.state_dict(), categories, key)
    base, _, digest = key.partition(":")
    run = build_engine(
        settings.model_engine,
        Features(model).eval(),
        threads=settings.torch_threads,
        onnx_path=onnx_cache_path(settings.model_cache_dir, f"{base}-trunk", digest),
        int8=int8,
        recheck=settings.model_int8_recheck_margin,
        logits=classifier.logits,
    )
    return Trunk(key, run, classifier)
