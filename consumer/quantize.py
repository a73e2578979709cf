"""The int8 engine's graph: ONNX Runtime static quantisation of the exported fp32 graph,
calibrated on photos like the ones the worker will classify (MODEL_CALIBRATION_DIR).

The recipe, chosen for its agreement with fp32 and top-1 accuracy on the dev photos
(benchmarks/inference.py reports both; docs/models/inference.md): QDQ format, per-channel int8
weights (7-bit on x86 CPUs without VNNI), uint8 activations, MinMax ranges, `quant_pre_process`
first; only convolutions and their ReLUs are quantised (quantising the pools and
concatenations too lowered agreement from 0.954 to 0.934), and the two layers whose
quantisation alone cost the most agreement stay float (SENSITIVE: 0.954 -> 0.960, and
faster than quantising them). Percentile and entropy calibration, reduce_range, per-tensor
weights, QOperator and more calibration photos were no better (benchmarks/HISTORY.md): every
static recipe tried left top-1 1.0-1.8 points below fp32 on the dev photos,
depending on which photos calibrated. So the engine also re-checks close calls in fp32
(consumer/engines.py, MODEL_INT8_RECHECK_MARGIN): ~14% of photos, agreement 0.996.

The result is cached beside the fp32 graph, keyed by that graph (weights, model, exporter),
the calibration photos' content, the recipe and onnxruntime's version: a worker quantises
once, and a changed calibration set or upgrade builds a new graph.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from common.errors import VisionScalingError
from common.imaging import find_images
from consumer.images import load_tensor

log = logging.getLogger(__name__)

# Fewer photos than this give activation ranges that depend on which photos were picked:
# refused, not quantised badly.
MIN_CALIBRATION_IMAGES = 100
RECIPE = "qdq-perchannel-u8s8-minmax-conv-relu-v2"  # v2: calibrated on torch-resized pixels


@lru_cache(maxsize=1)
def _has_vnni() -> bool:
    """x86 CPUs without VNNI multiply u8 x s8 pairs into saturating int16 (vpmaddubsw): there,
    ONNX Runtime's advice is 7-bit weights (reduce_range), which never saturate."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # not Linux x86: nothing known to saturate
    return "vnni" in flags or "avx2" not in flags


# the first convolution (it sees the raw normalised pixels) and the first fire module's
# squeeze (the maxpool's outliers): alone they cost 2.2 and 4.0 points of agreement
SENSITIVE = ("/features/features.0/Conv", "/features/features.3/squeeze/Conv")


class CalibrationError(VisionScalingError, ValueError):
    """No usable calibration set: the int8 engine is refused (the message says why)."""


def calibration_images(directory: Path, limit: int) -> list[Path]:
    """Up to `limit` photos of `directory`, spread evenly over its sorted listing."""
    if not directory.is_dir():
        raise CalibrationError(
            f"MODEL_CALIBRATION_DIR {directory} is not a directory: the int8 engine calibrates on "
            "photos like the ones it will classify (a few hundred); point it at some"
        )
    found = find_images(directory)
    if len(found) < MIN_CALIBRATION_IMAGES:
        raise CalibrationError(
            f"{directory} has {len(found)} images; the int8 engine needs at least {MIN_CALIBRATION_IMAGES} "
            "to calibrate on (fewer give ranges that depend on which photos were picked)"
        )
    step = max(1.0, len(found) / limit)
    return [found[int(i * step)] for i in range(min(limit, len(found)))]


def int8_path(fp32_path: Path, images: Sequence[Path]) -> Path:
    import onnxruntime

    digest = hashlib.sha256(f"{fp32_path.name}|{RECIPE}|{_has_vnni()}|{onnxruntime.__version__}".encode())
    for path in images:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return fp32_path.with_name(f"{fp32_path.stem}-int8-{digest.hexdigest()[:16]}.onnx")


class _Photos:
    """onnxruntime's CalibrationDataReader: the photos, preprocessed as the worker does."""

    def __init__(self, images: Sequence[Path], max_pixels: int, fast: bool):
        self._all, self._max_pixels, self._fast = list(images), max_pixels, fast
        self.rewind()

    def get_next(self):
        for path in self._images:
            try:
                tensor = load_tensor(path.read_bytes(), self._max_pixels, self._fast)
            except Exception as exc:  # noqa: BLE001 - a bad photo in the set is skipped, not fatal
                log.warning("calibration: skipping %s (%s)", path, exc)
                continue
            self._used += 1
            return {"input": tensor.numpy()[np.newaxis]}
        # files named like photos that do not decode do not count towards the minimum
        if self._used < MIN_CALIBRATION_IMAGES:
            raise CalibrationError(
                f"only {self._used} of {len(self._all)} calibration files decode as images; the int8 "
                f"engine needs at least {MIN_CALIBRATION_IMAGES} (see the warnings above for why)"
            )
        return None

    def rewind(self) -> None:  # the reader interface: some calibration methods read twice
        self._images, self._used = iter(self._all), 0


def quantize(fp32_path: Path, images: Sequence[Path], max_pixels: int, fast: bool = True) -> Path:
    """The int8 graph for `fp32_path` calibrated on `images` (built unless cached)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = int8_path(fp32_path, images)
    if out.is_file():
        return out
    log.info("quantising %s to int8 on %d calibration photos -> %s", fp32_path.name, len(images), out)
    with tempfile.TemporaryDirectory(dir=fp32_path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        staged = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre),
            str(staged),
            _Photos(images, max_pixels, fast),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=not _has_vnni(),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv", "Relu"],
            nodes_to_exclude=_present(pre, SENSITIVE),
        )
        os.replace(staged, out)  # atomic: concurrent workers never read half a graph
    return out


def _present(path: Path, names: Sequence[str]) -> list[str]:
    """The nodes of `names` the graph has (another base model's graph may have none)."""
    import onnx

    nodes = {node.name for node in onnx.load(str(path), load_external_data=False).graph.node}
    return [n for n in names if n in nodes]
