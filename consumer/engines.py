"""Ways to run the same SqueezeNet on the CPU. Each engine maps an NCHW float32 batch to logits.

Measured on a 2-core machine (README, benchmarks/inference.py): ONNX Runtime is fastest,
then channels_last torch; TorchScript freezing gains little over plain torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import numpy as np
import torch

log = logging.getLogger(__name__)

Engine = Callable[[torch.Tensor], torch.Tensor]
ENGINES = ("onnxruntime", "onnxruntime-int8", "openvino-int8", "channels_last", "torchscript", "torch")
INT8_ENGINES = ("onnxruntime-int8", "openvino-int8")
ONNX_OPSET = 17


def _plain(model: torch.nn.Module) -> Engine:
    return model


def _channels_last(model: torch.nn.Module) -> Engine:
    model = model.to(memory_format=torch.channels_last)
    return lambda batch: model(batch.contiguous(memory_format=torch.channels_last))


def _torchscript(model: torch.nn.Module) -> Engine:
    with torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's own deprecation notice
        traced = torch.jit.trace(model, torch.zeros(1, 3, 224, 224))
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))


def onnx_cache_path(cache_dir: Path, model_name: str, weights_id: str) -> Path:
    """The exported graph depends on the weights, the model and the exporter: all in the name."""
    digest = hashlib.sha256(f"{model_name}|{weights_id}|{torch.__version__}|{ONNX_OPSET}".encode()).hexdigest()
    return cache_dir / f"{model_name}-{digest[:16]}.onnx"


def export_onnx(model: torch.nn.Module, path: Path, example: Optional[torch.Tensor] = None) -> None:
    """Export once; written to a temporary name and renamed, so concurrent workers never
    read a half-written file. `example`: an input of the model's type (default float NCHW)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, 224, 224) if example is None else example,),
                tmp,
                dynamo=False,
                input_names=["input"],
                output_names=["logits"],
                opset_version=ONNX_OPSET,
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime CPU session on `threads` intra-op threads, every graph optimisation on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ensure_exported(model: torch.nn.Module, onnx_path: Path) -> Path:
    """The model's ONNX graph at `onnx_path`, exported unless it is already there."""
    if not onnx_path.is_file():
        log.info("exporting the model to ONNX: %s", onnx_path)
        export_onnx(model, onnx_path)
    return onnx_path


def openvino_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX graph on OpenVINO's CPU plugin, `threads` threads, one stream. Its float
    operators run in the plugin's default precision for this CPU: bf16 where the CPU has
    AVX512-BF16 or AMX (the int8 graph's first two layers and pools; README "Inference")."""
    import openvino as ov

    core = ov.Core()
    graph = core.read_model(str(path))
    graph.reshape({0: [-1, 3, 224, 224]})
    compiled = core.compile_model(graph, "CPU", {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1})
    local = threading.local()  # an infer request serves one call at a time

    def run(x: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        return request.infer({0: x})[0].copy()

    return run


def _onnxruntime(
    model: torch.nn.Module,
    threads: int,
    onnx_path: Path,
    int8: Optional[Callable] = None,
    recheck: float = 0.0,
    runtime: str = "onnxruntime",
) -> Engine:
    """`int8`: fp32 graph path -> int8 graph path (consumer.quantize), for the int8 engines,
    run by ONNX Runtime or OpenVINO (`runtime`); then the images whose int8 top-1 probability
    leads the runner-up by less than `recheck` (close calls, where 8-bit rounding flips
    answers) are classified again by ONNX Runtime in fp32."""
    ensure_exported(model, onnx_path)
    if int8 is None:
        fp32 = onnx_session(onnx_path, threads)
        return lambda batch: torch.from_numpy(fp32.run(None, {"input": batch.contiguous().numpy()})[0])
    if runtime == "openvino":
        quantised = openvino_runner(int8(onnx_path), threads)
    else:
        session = onnx_session(int8(onnx_path), threads)
        quantised = lambda x: session.run(None, {"input": x})[0]  # noqa: E731
    fp32 = onnx_session(onnx_path, threads) if recheck > 0 else None  # only for the re-check

    def run(batch: torch.Tensor) -> torch.Tensor:
        x = batch.contiguous().numpy()
        logits = torch.from_numpy(quantised(x))
        if fp32 is not None:
            top2 = torch.softmax(logits, dim=1).topk(2, dim=1).values
            close = (top2[:, 0] - top2[:, 1] < recheck).nonzero().flatten()
            if len(close):
                logits[close] = torch.from_numpy(fp32.run(None, {"input": x[close.numpy()]})[0])
        return logits

    return run


def build_engine(
    name: str,
    model: torch.nn.Module,
    *,
    threads: int,
    onnx_path: Path,
    int8: Optional[Callable] = None,
    recheck: float = 0.0,
) -> Engine:
    model = model.eval()
    if name == "torch":
        return _plain(model)
    if name == "channels_last":
        return _channels_last(model)
    if name == "torchscript":
        return _torchscript(model)
    if name == "onnxruntime":
        return _onnxruntime(model, threads, onnx_path)
    if name in INT8_ENGINES:
        if int8 is None:
            raise ValueError("the int8 engines need their calibration (consumer.quantize)")
        runtime = "openvino" if name == "openvino-int8" else "onnxruntime"
        return _onnxruntime(model, threads, onnx_path, int8, recheck, runtime)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
