"""SqueezeNet with real ImageNet weights, batched top-k on CPU."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torchvision

from consumer.engines import Engine, build_engine, onnx_cache_path
from settings import Settings

log = logging.getLogger(__name__)

_WEIGHT_ENUMS = {
    "squeezenet1_1": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
    "squeezenet1_0": torchvision.models.SqueezeNet1_0_Weights.IMAGENET1K_V1,
}


class WeightsError(RuntimeError):
    """No real weights could be had: the pipeline refuses to classify with random ones."""


@dataclass(frozen=True)
class TopK:
    class_index: int
    category: str
    confidence: float

    def as_dict(self) -> dict:
        return {"class_index": self.class_index, "category": self.category, "confidence": self.confidence}


def resolve_weights_path(settings: Settings) -> Optional[Path]:
    """MODEL_WEIGHTS if set (it must exist); else the shared weights file if present;
    else None, meaning torchvision's own download."""
    if settings.model_weights is not None:
        if not settings.model_weights.is_file():
            raise WeightsError(f"MODEL_WEIGHTS={settings.model_weights} does not exist or is not a file")
        return settings.model_weights
    candidate = settings.shared_dir / "models" / f"{settings.model_name}_imagenet1k.pth"
    return candidate if candidate.is_file() else None


class Classifier:
    """One model per process; predict() is called from a single inference thread."""

    def __init__(self, engine: Engine, name: str, categories: list[str], top_k: int, engine_name: str = ""):
        self.engine = engine
        self.name = name
        self.engine_name = engine_name
        self.categories = categories
        self.top_k = min(top_k, len(categories))

    def predict(self, batch: torch.Tensor) -> list[list[TopK]]:
        """batch [N, 3, 224, 224] -> per image, the top-k classes by softmax probability."""
        with torch.inference_mode():
            logits = self.engine(batch)
            probs = torch.softmax(logits.float(), dim=1)
            conf, idx = probs.topk(self.top_k, dim=1)
        return [
            [TopK(int(i), self.categories[int(i)], float(c)) for c, i in zip(crow, irow)]
            for crow, irow in zip(conf.tolist(), idx.tolist())
        ]


def load_classifier(settings: Settings) -> Classifier:
    torch.set_num_threads(settings.torch_threads)
    enum = _WEIGHT_ENUMS[settings.model_name]
    builder = getattr(torchvision.models, settings.model_name)
    path = resolve_weights_path(settings)
    if path is not None:
        model = builder(weights=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise WeightsError(f"cannot load {settings.model_name} weights from {path}: {exc}") from exc
        source, weights_id = str(path), hashlib.sha256(path.read_bytes()).hexdigest()
    else:
        try:
            model = builder(weights=enum)  # torchvision downloads and checks the official file
        except Exception as exc:
            raise WeightsError(
                f"no weights for {settings.model_name}: MODEL_WEIGHTS is unset, "
                f"{settings.shared_dir / 'models'} has none, and torchvision's download failed ({exc}). "
                "Set MODEL_WEIGHTS to a state_dict file; refusing to run with random weights."
            ) from exc
        source = weights_id = enum.url
    engine = build_engine(
        settings.model_engine,
        model.eval(),
        threads=settings.torch_threads,
        onnx_path=onnx_cache_path(settings.model_cache_dir, settings.model_name, weights_id),
    )
    log.info(
        "model %s loaded from %s, engine %s, %d threads",
        settings.model_name,
        source,
        settings.model_engine,
        settings.torch_threads,
    )
    return Classifier(engine, settings.model_name, list(enum.meta["categories"]), settings.top_k, settings.model_engine)
