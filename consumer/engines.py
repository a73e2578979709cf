"""Ways to run the same SqueezeNet on the CPU. Each engine maps an NCHW float32 batch to the
network's output: logits, or the trunk's feature map (consumer/trunk.py).

ONNX Runtime (the default) exports the model once and runs it with the least overhead per call;
the others are kept to compare against and as fallbacks. benchmarks/inference.py measures each
engine at several batch sizes; figures in docs/performance.md ("Model alone").
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger(__name__)

Engine = Callable[[torch.Tensor], torch.Tensor]
ENGINES = ("onnxruntime", "onnxruntime-int8", "channels_last", "torchscript", "torch")
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
                output_names=["output"],
                opset_version=ONNX_OPSET,
                dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def onnx_session(path: Path, threads: int):
    """An ONNX Runtime CPU session on `threads` intra-op threads, every graph optimisation on,
    its threads sleeping between calls (not spinning: the heads run in torch right after)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ensure_exported(model: torch.nn.Module, onnx_path: Path) -> Path:
    """The model's ONNX graph at `onnx_path`, exported unless it is already there."""
    if not onnx_path.is_file():
        log.info("exporting the model to ONNX: %s", onnx_path)
        export_onnx(model, onnx_path)
    return onnx_path


def _onnxruntime(
    model: torch.nn.Module,
    threads: int,
    onnx_path: Path,
    int8: Optional[Callable] = None,
    recheck: float = 0.0,
    logits: Callable[[torch.Tensor], torch.Tensor] = lambda out: out,
) -> Engine:
    """`int8`: fp32 graph path -> int8 graph path (consumer.quantize), for the int8 engine;
    then the images whose int8 top-1 probability (of `logits(output)`: a trunk's output goes
    through its classifier head) leads the runner-up by less than `recheck` (close calls,
    where 8-bit rounding flips answers) are run again in fp32."""
    ensure_exported(model, onnx_path)
    if int8 is None:
        fp32 = onnx_session(onnx_path, threads)
        return lambda batch: torch.from_numpy(fp32.run(None, {"input": batch.contiguous().numpy()})[0])
    quantised = onnx_session(int8(onnx_path), threads)
    fp32 = onnx_session(onnx_path, threads) if recheck > 0 else None  # only for the re-check

    def run(batch: torch.Tensor) -> torch.Tensor:
        x = batch.contiguous().numpy()
        out = torch.from_numpy(quantised.run(None, {"input": x})[0])
        if fp32 is not None:
            top2 = torch.softmax(logits(out), dim=1).topk(2, dim=1).values
            close = (top2[:, 0] - top2[:, 1] < recheck).nonzero().flatten()
            if len(close):
                out[close] = torch.from_numpy(fp32.run(None, {"input": x[close.numpy()]})[0])
        return out

    return run


def build_engine(
    name: str,
    model: torch.nn.Module,
    *,
    threads: int,
    onnx_path: Path,
    int8: Optional[Callable] = None,
    recheck: float = 0.0,
    logits: Callable[[torch.Tensor], torch.Tensor] = lambda out: out,
) -> Engine:
    """`model` maps an NCHW image batch to logits, or (a trunk) to features: then `logits`
    turns its output into class logits for the int8 engine's close-call re-check."""
    model = model.eval()
    if name == "torch":
        return _plain(model)
    if name == "channels_last":
        return _channels_last(model)
    if name == "torchscript":
        return _torchscript(model)
    if name == "onnxruntime":
        return _onnxruntime(model, threads, onnx_path)
    if name == "onnxruntime-int8":
        if int8 is None:
            raise ValueError("the int8 engine needs its calibration (consumer.quantize)")
        return _onnxruntime(model, threads, onnx_path, int8, recheck, logits)
    raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
