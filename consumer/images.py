"""Bytes in, model-ready tensor out: decoding (common/imaging.py, with its bounds and colour
rules) and torchvision's reference preprocessing, without torchvision's per-call overhead:
Resize(256) as torch's antialiased bilinear resize of the uint8 pixels (torch's own uint8
kernel), CenterCrop(224) with torchvision's rounding, then scaling and normalisation as one
multiply-add per channel.

Against the same transform on the PIL image (Pillow's resize): 0.17% of the 8-bit values one
level apart, no value further; the same top-1 answer on all 500 dev photos, the same top-5
on 498 (the other two swap near-tied 5th and 6th classes; tests/consumer/test_images.py).
Torch's uint8 kernel is the faster of the two resizes (decode + preprocess is measured by
benchmarks/inference.py; the change is in benchmarks/HISTORY.md). Images over
TORCH_RESIZE_MAX_PIXELS keep Pillow's resize (memory, below). (Pillow resampling only the
cropped box was rejected: 2.5% of the values off, 3 of the 500 answers changed.)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.models import SqueezeNet1_1_Weights

from common.imaging import RESIZE_TO, decode

# above this, torch's resize would need the pixels copied out of Pillow twice (3 bytes a
# pixel each, 356 MB for the largest image MAX_IMAGE_PIXELS allows, on top of Pillow's own
# 4): such images are resized by Pillow, which needs no copy (the same result to one level)
TORCH_RESIZE_MAX_PIXELS = 8_000_000

# torchvision's reference: resize shorter side to 256 (bilinear, antialias), center crop
# 224, scale to 0..1, normalise with ImageNet mean/std (the seed-style baseline uses it as is)
REFERENCE_TRANSFORM = SqueezeNet1_1_Weights.IMAGENET1K_V1.transforms()
CROP = 224
_MEAN = torch.tensor([0.485, 0.456, 0.406])
_STD = torch.tensor([0.229, 0.224, 0.225])
# x / 255 then (x - mean) / std, as one multiply-add per channel
PIXEL_SCALE = (1.0 / (255.0 * _STD)).view(3, 1, 1)
PIXEL_OFFSET = (-_MEAN / _STD).view(3, 1, 1)


def resized_and_cropped(width: int, height: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The size Resize(256) gives and the box CenterCrop(224) keeps of it, with torchvision's
    own rounding."""
    if width <= height:
        new_w, new_h = RESIZE_TO, int(RESIZE_TO * height / width)
    else:
        new_w, new_h = int(RESIZE_TO * width / height), RESIZE_TO
    top, left = int(round((new_h - CROP) / 2.0)), int(round((new_w - CROP) / 2.0))
    return (new_w, new_h), (left, top, left + CROP, top + CROP)


def cropped_pixels(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> the 224x224 uint8 pixels [3, 224, 224] (channels-last in memory) that
    the reference transform normalises."""
    size, box = resized_and_cropped(*img.size)
    left, top, right, bottom = box
    if img.width * img.height > TORCH_RESIZE_MAX_PIXELS:
        crop = np.array(img.resize(size, Image.BILINEAR).crop(box), dtype=np.uint8)
        return torch.from_numpy(crop).permute(2, 0, 1)
    pixels = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None]  # HWC seen as NCHW
    resized = F.interpolate(pixels, size=(size[1], size[0]), mode="bilinear", antialias=True, align_corners=False)
    return resized[0, :, top:bottom, left:right]


def normalised(pixels: torch.Tensor) -> torch.Tensor:
    """cropped_pixels' uint8 [3, 224, 224] -> the model's float input (x / 255, mean, std)."""
    out = pixels.to(torch.float32, memory_format=torch.contiguous_format)
    return out.mul_(PIXEL_SCALE).add_(PIXEL_OFFSET)


def preprocess(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor [3, 224, 224], torchvision's reference transform."""
    return normalised(cropped_pixels(img))


def load_tensor(data: bytes, max_pixels: int, fast: bool = False, max_aspect: float = 20.0) -> torch.Tensor:
    return preprocess(decode(data, max_pixels, fast, max_aspect))
