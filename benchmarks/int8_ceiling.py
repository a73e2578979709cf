"""How far can int8 SqueezeNet go on this machine, and does that reach an int8 pipeline 1.4x
the fp32 one? Prints JSON (and writes it with --out):

- `profile_batch_32`: where the int8 graphs' time goes (ONNX Runtime's profiler, share per
  operator type and the costliest nodes, batch 32, one thread): in the served graph, what
  stays float (the two layers consumer/quantize.py keeps float, and the pool between them)
  against the int8 operators;
- `variants`: per graph, ms per image on one thread at batch 1, 4 (the pipeline's
  INFER_CHUNK_SIZE) and 32, top-1 agreement with fp32 and top-1 accuracy (labels.csv), and for
  re-check margins the share of photos re-checked in fp32 and the accuracy after it:
  - `fp32`, the served fp32 graph, and `int8`, the served int8 graph (ONNX Runtime);
  - `int8_all_layers`: normalisation folded into the first convolution (it has no padding, so
    the fold is exact) and uint8 pixels in: the input quantisation is lossless and every
    convolution is int8;
  - `openvino_*` (OpenVINO, in the `bench` extra; skipped if it is not installed): the served
    int8 graph on OpenVINO, its float parts in f32 and in OpenVINO's default precision (bf16
    on CPUs with AVX512-BF16/AMX);
- `pipeline_estimate`: with the per-image CPU of a pipeline run (--pipeline, JSON of
  benchmarks/pipeline.py: decode, the rest and the services stay, the model changes), the
  int8/fp32 pipeline ratio each variant allows at each margin.

    python -m benchmarks.int8_ceiling [--images DIR] [--pipeline FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import emit
from common.imaging import decode, find_images
from consumer.engines import ensure_exported, export_onnx, onnx_cache_path, onnx_session
from consumer.images import PIXEL_OFFSET, PIXEL_SCALE, cropped_pixels, normalised
from consumer.quantize import calibration_images
from consumer.weights import int8_quantiser, load_base_model
from settings import Settings

MAX_PIXELS = 60_000_000
MARGINS = (0.0, 0.01, 0.02, 0.05)
DEFAULT_PIPELINE = Path(__file__).parent / "results" / "pipeline-w2-p6-t1-onnxruntime-onnxruntime-int8.json"


class PixelsIn(torch.nn.Module):
    """The model on uint8 NHWC pixels, with x/255, mean and std folded into the first
    convolution's weights and bias (exact: that convolution has no padding)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = copy.deepcopy(model)
        first = self.model.features[0]
        if tuple(first.padding) != (0, 0):
            raise ValueError("folding the normalisation is exact only for an unpadded first convolution")
        with torch.no_grad():
            w = first.weight.double()
            first.bias.copy_((first.bias.double() + (w * PIXEL_OFFSET.double()).sum((1, 2, 3))).float())
            first.weight.copy_((w * PIXEL_SCALE.double()).float())

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels.permute(0, 3, 1, 2).float())


def hwc(crop: torch.Tensor) -> np.ndarray:
    """cropped_pixels' [3, 224, 224] as height x width x channel (what PixelsIn takes)."""
    return crop.permute(1, 2, 0).numpy()


def hwc_pixels(data: bytes, fast: bool) -> np.ndarray:
    """The worker's cropped uint8 pixels of an encoded image, as PixelsIn takes them."""
    return hwc(cropped_pixels(decode(data, MAX_PIXELS, fast)))


class _Reader:
    """onnxruntime's CalibrationDataReader over arrays, one photo per call."""

    def __init__(self, arrays: list[np.ndarray]):
        self.arrays = arrays
        self.rewind()

    def get_next(self):
        item = next(self._it, None)
        return None if item is None else {"input": item[np.newaxis]}

    def rewind(self) -> None:
        self._it = iter(self.arrays)


def all_layers_int8(model: torch.nn.Module, calibration: list[np.ndarray], tmp: Path) -> Path:
    """The int8_all_layers variant: consumer/quantize.py's recipe with no layer left float."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32, pre, out = tmp / "pixels.onnx", tmp / "pixels-pre.onnx", tmp / "pixels-int8.onnx"
    export_onnx(PixelsIn(model).eval(), fp32, example=torch.zeros(1, 224, 224, 3, dtype=torch.uint8))
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        _Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["Conv", "Relu"],
    )
    return out


def ms_per_image(run, x: np.ndarray) -> dict[str, float]:
    """CPU ms per image on this thread at batch 1, 4 and 32 (the best of three rounds)."""
    out = {}
    for b in (1, 4, 32):
        batch, n = x[:b], max(2, 256 // b)
        run(batch)
        best = float("inf")
        for _ in range(3):
            started = time.process_time()
            for _ in range(n):
                run(batch)
            best = min(best, (time.process_time() - started) / (n * b))
        out[str(b)] = round(best * 1000, 3)
    return out


def quality(logits: np.ndarray, fp32: np.ndarray, truth: np.ndarray | None) -> dict:
    """Agreement and accuracy, pure and after re-checking close calls in fp32, per margin."""
    probs = torch.softmax(torch.from_numpy(logits), 1).topk(2, 1).values.numpy()
    gap, top, ref = probs[:, 0] - probs[:, 1], logits.argmax(1), fp32.argmax(1)
    out: dict = {}
    for m in MARGINS:
        final = np.where(gap < m, ref, top)
        out[str(m)] = {
            "rechecked_share": round(float(np.mean(gap < m)), 4),
            "agreement": round(float(np.mean(final == ref)), 4),
            **({"top1": round(float(np.mean(final == truth)), 4)} if truth is not None else {}),
        }
    return out


def profile(path: Path, x: np.ndarray) -> dict[str, dict[str, float]]:
    """Share of kernel time per operator type and for the five costliest nodes (ONNX Runtime's
    profiler, one thread)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(10):
            session.run(None, {"input": x})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_op: Counter = Counter()
    by_node: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            by_node[f"{e['name'].removesuffix('_kernel_time')} ({e['args']['op_name']})"] += e["dur"]
    total = sum(by_op.values())
    return {
        "by_op": {op: round(us / total, 3) for op, us in by_op.most_common()},
        "top_nodes": {node: round(us / total, 3) for node, us in by_node.most_common(5)},
    }


def openvino_runs(path: Path) -> dict:
    try:
        import openvino as ov
    except ImportError:
        return {}
    core, runs = ov.Core(), {}
    for name, hint in (("openvino_int8_f32", {"INFERENCE_PRECISION_HINT": "f32"}), ("openvino_int8_default", {})):
        model = core.read_model(str(path))
        model.reshape({0: [-1, 3, 224, 224]})
        compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": 1, "NUM_STREAMS": 1, **hint})
        request = compiled.create_infer_request()
        precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        runs[name] = (lambda x, r=request: r.infer({0: x})[0].copy(), precision)
    return runs


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"cpu": platform.processor() or platform.machine(), "cores": str(os.cpu_count())}
    for package in ("onnxruntime", "openvino", "torch"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


def estimate(pipeline: dict, variants: dict) -> dict:
    """int8/fp32 pipeline ratio per variant and margin: decode, the rest and the services as
    measured in the fp32 run; the model's pipeline cost scaled by its batch-4 speed, plus the
    fp32 re-checks."""
    fp32 = pipeline["engines"]["onnxruntime"]["cpu_ms_per_image"]
    common = fp32["workers_decode"] + fp32["workers_other"] + sum(fp32["services"].values())
    model = fp32["workers_infer"]
    base = variants["fp32"]["ms_per_image"]["4"]
    out = {"common_ms": round(common, 2), "fp32_model_ms": model}
    for name, v in variants.items():
        if name == "fp32":
            continue
        scaled = model * v["ms_per_image"]["4"] / base
        out[name] = {
            m: round((common + model) / (common + scaled + q["rechecked_share"] * model), 3)
            for m, q in v["quality"].items()
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.int8_ceiling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--images", type=Path, help="folder of photos (default SHARED_DIR/images/dev)")
    ap.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE, help="a benchmarks/pipeline.py JSON")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    settings = Settings(torch_threads=1)
    folder = args.images or settings.shared_dir / "images" / "dev"
    paths = find_images(folder)
    if not paths:
        sys.exit(f"no images under {folder}")
    labels = folder / "labels.csv"
    truth = None
    if labels.is_file():
        known = {r["filename"]: int(r["class_index"]) for r in csv.DictReader(labels.read_text().splitlines())}
        truth = np.array([known.get(p.name, -1) for p in paths])

    model, _, weights_id = load_base_model(settings)
    fp32_path = ensure_exported(model, onnx_cache_path(settings.model_cache_dir, settings.model_name, weights_id))
    int8_path = int8_quantiser(settings)(fp32_path)
    # each photo decoded and resized once: the fp32/int8 graphs take it normalised, PixelsIn raw
    crops = [cropped_pixels(decode(p.read_bytes(), MAX_PIXELS, settings.fast_decode)) for p in paths]
    tensors = np.stack([normalised(c).numpy() for c in crops])
    pixels = np.stack([hwc(c) for c in crops])
    calibration = calibration_images(
        settings.model_calibration_dir or settings.shared_dir / "images" / "dev", settings.model_calibration_images
    )
    calib_pixels = [hwc_pixels(p.read_bytes(), settings.fast_decode) for p in calibration]

    def ort_run(path: Path):
        session = onnx_session(path, 1)
        return lambda x: session.run(None, {"input": x})[0]

    with tempfile.TemporaryDirectory() as tmp:
        all_layers_path = all_layers_int8(model, calib_pixels, Path(tmp))
        runs = {
            "fp32": (ort_run(fp32_path), tensors),
            "int8": (ort_run(int8_path), tensors),
            "int8_all_layers": (ort_run(all_layers_path), pixels),
        }
        precisions = {}
        for name, (run, hint) in openvino_runs(int8_path).items():
            runs[name], precisions[name] = (run, tensors), hint
        logits = {
            name: np.concatenate([run(x[i : i + 50]) for i in range(0, len(x), 50)]) for name, (run, x) in runs.items()
        }
        variants = {}
        for name, (run, x) in runs.items():
            quality_ = quality(logits[name], logits["fp32"], truth)
            variants[name] = {"ms_per_image": ms_per_image(run, x), "quality": quality_}
            if name in precisions:
                variants[name]["float_precision"] = precisions[name]
            print(f"{name}: {variants[name]}", file=sys.stderr)
        result = {
            "versions": versions(),
            "images": {"folder": str(folder), "count": len(paths)},
            "profile_batch_32": {
                "int8": profile(int8_path, tensors[:32]),
                "int8_all_layers": profile(all_layers_path, pixels[:32]),
            },
            "variants": variants,
        }
    if args.pipeline.is_file():
        result["pipeline_estimate"] = estimate(json.loads(args.pipeline.read_text()), variants)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
