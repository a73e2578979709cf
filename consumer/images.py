"""Bytes in, model-ready tensor out: decoding (common/imaging.py, with its bounds and colour
rules) and torchvision's reference preprocessing."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.models import SqueezeNet1_1_Weights

from common.imaging import decode

# Exactly torchvision's reference: resize shorter side to 256 (bilinear, antialias),
# center crop 224, scale to 0..1, normalise with ImageNet mean/std.
REFERENCE_TRANSFORM = SqueezeNet1_1_Weights.IMAGENET1K_V1.transforms()


def preprocess(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3, 224, 224], torchvision's reference transform."""
    return REFERENCE_TRANSFORM(img)


def load_tensor(data: bytes, max_pixels: int, fast: bool = False, max_aspect: float = 20.0) -> torch.Tensor:
    return preprocess(decode(data, max_pixels, fast, max_aspect))
