"""The base network's real ImageNet weights (MODEL_WEIGHTS, else ../shared's file, else
torchvision's download; never random ones), and the int8 engine's calibration."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional

import torch
import torchvision

from common.errors import VisionScalingError
from settings import Settings

_WEIGHT_ENUMS = {
    "squeezenet1_1": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1,
    "squeezenet1_0": torchvision.models.SqueezeNet1_0_Weights.IMAGENET1K_V1,
}


class WeightsError(VisionScalingError, RuntimeError):
    """No real weights could be had: the pipeline refuses to classify with random ones."""


def resolve_weights_path(settings: Settings, name: str = "") -> Optional[Path]:
    """MODEL_WEIGHTS if set (it must exist); else the shared weights file if present;
    else None, meaning torchvision's own download."""
    if settings.model_weights is not None:
        if not settings.model_weights.is_file():
            raise WeightsError(f"MODEL_WEIGHTS={settings.model_weights} does not exist or is not a file")
        return settings.model_weights
    candidate = settings.shared_dir / "models" / f"{name or settings.model_name}_imagenet1k.pth"
    return candidate if candidate.is_file() else None


def imagenet_categories(name: str) -> list[str]:
    return list(_WEIGHT_ENUMS[name].meta["categories"])


def load_base_model(settings: Settings, name: str = "") -> tuple[torch.nn.Module, str, str]:
    """A built-in torchvision model with its real ImageNet weights: (model in eval mode,
    source, weights id)."""
    name = name or settings.model_name
    enum = _WEIGHT_ENUMS[name]
    builder = getattr(torchvision.models, name)
    path = resolve_weights_path(settings, name)
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


def int8_quantiser(settings: Settings):
    """fp32 graph -> int8 graph calibrated on MODEL_CALIBRATION_DIR (refused when too small)."""
    from consumer.quantize import calibration_images, quantize

    directory = settings.model_calibration_dir or settings.shared_dir / "images" / "dev"
    images = calibration_images(directory, settings.model_calibration_images)
    return lambda fp32_path: quantize(fp32_path, images, settings.max_image_pixels, settings.fast_decode)
