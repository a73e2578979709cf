"""SqueezeNet with real ImageNet weights, batched top-k on CPU."""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import torch
import torchvision

from common.errors import VisionScalingError
from consumer.engines import Engine, build_engine, onnx_cache_path
from settings import Settings

if TYPE_CHECKING:
    from db.registry import ModelVersion

log = logging.getLogger(__name__)

_WEIGHT_ENUMS = {
    "squeezenet1_1": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
    "squeezenet1_0": torchvision.models.SqueezeNet1_0_Weights.IMAGENET1K_V1,
}


class WeightsError(VisionScalingError, RuntimeError):
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

    def __init__(
        self, engine: Engine, name: str, categories: list[str], top_k: int, engine_name: str = "", version: int = 0
    ):
        self.engine = engine
        self.name = name
        self.version = version  # 0: a built-in model; N: NAME@N from the registry
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


def load_base_model(settings: Settings, name: str = "") -> tuple[torch.nn.Module, str, str]:
    """A built-in torchvision model with its real ImageNet weights (MODEL_WEIGHTS, the shared
    file, else torchvision's download; never random ones): (model in eval mode, source, weights id)."""
    name = name or settings.model_name
    enum = _WEIGHT_ENUMS[name]
    builder = getattr(torchvision.models, name)
    path = resolve_weights_path(settings.model_copy(update={"model_name": name}))
    if path is not None:
        model = builder(weights=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as exc:
            raise WeightsError(f"cannot load {name} weights from {path}: {exc}") from exc
        return model.eval(), str(path), hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        model = builder(weights=enum)  # torchvision downloads and checks the official file
    except Exception as exc:
        raise WeightsError(
            f"no weights for {name}: MODEL_WEIGHTS is unset, "
            f"{settings.shared_dir / 'models'} has none, and torchvision's download failed ({exc}). "
            "Set MODEL_WEIGHTS to a state_dict file; refusing to run with random weights."
        ) from exc
    return model.eval(), enum.url, enum.url


def _classifier(
    settings: Settings, model: torch.nn.Module, name: str, weights_id: str, categories: list[str], version: int = 0
) -> Classifier:
    engine = build_engine(
        settings.model_engine,
        model.eval(),
        threads=settings.torch_threads,
        onnx_path=onnx_cache_path(settings.model_cache_dir, name, weights_id),
        int8=int8_quantiser(settings) if settings.model_engine == "onnxruntime-int8" else None,
        recheck=settings.model_int8_recheck_margin,
    )
    return Classifier(engine, name, categories, settings.top_k, settings.model_engine, version=version)


def int8_quantiser(settings: Settings):
    """fp32 graph -> int8 graph calibrated on MODEL_CALIBRATION_DIR (refused when too small)."""
    from consumer.quantize import calibration_images, quantize

    directory = settings.model_calibration_dir or settings.shared_dir / "images" / "dev"
    images = calibration_images(directory, settings.model_calibration_images)
    return lambda fp32_path: quantize(fp32_path, images, settings.max_image_pixels, settings.fast_decode)


def load_registered(settings: Settings, mv: ModelVersion, s3=None) -> Classifier:
    """A version trained on the user's own categories: its weights from S3, refused unless
    their SHA-256 is the registry's, on the base model's architecture with its own head."""
    from common.artefacts import ArtefactError, get_verified_weights

    torch.set_num_threads(settings.torch_threads)
    try:
        data = get_verified_weights(s3 or settings.s3_client(), mv.uri, mv.sha256)
        model = getattr(torchvision.models, mv.base_model)(weights=None, num_classes=len(mv.categories))
        model.load_state_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True), strict=True)
    except ArtefactError as exc:
        raise WeightsError(f"{mv.ref}: {exc}") from exc
    except Exception as exc:
        raise WeightsError(f"{mv.ref}: cannot load its weights: {exc}") from exc
    classifier = _classifier(settings, model, mv.name, mv.sha256, list(mv.categories), mv.version)
    log.info("model %s loaded from %s, engine %s", mv.ref, mv.uri, settings.model_engine)
    return classifier


def production_version(settings: Settings, connect) -> ModelVersion:
    """The production version of MODEL_NAME in the registry, or a WeightsError saying how to get one."""
    from db.registry import serving

    conn = connect()
    try:
        with conn:
            production, _ = serving(conn, settings.model_name)
    finally:
        conn.close()
    if production is None:
        raise WeightsError(
            f"MODEL_NAME={settings.model_name} has no production version in the registry: train one with "
            f"`python -m training fit DATA --name {settings.model_name}` and promote it with "
            f"`python -m training promote {settings.model_name}@N`"
        )
    return production


def load_classifier(settings: Settings, connect=None) -> Classifier:
    """MODEL_NAME's classifier: a built-in ImageNet model, or the production version of a
    registered one (then `connect` opens the registry's database)."""
    torch.set_num_threads(settings.torch_threads)
    if not settings.builtin_model:
        if connect is None:
            from db.connection import connect as db_connect

            connect = lambda: db_connect(settings)  # noqa: E731
        return load_registered(settings, production_version(settings, connect))
    model, source, weights_id = load_base_model(settings)
    categories = list(_WEIGHT_ENUMS[settings.model_name].meta["categories"])
    classifier = _classifier(settings, model, settings.model_name, weights_id, categories)
    log.info(
        "model %s loaded from %s, engine %s, %d threads",
        settings.model_name,
        source,
        settings.model_engine,
        settings.torch_threads,
    )
    return classifier
