"""The benchmark script runs and prints well-formed figures (its numbers are read by people)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.model


def test_inference_benchmark_prints_json(tmp_path, dev_images, weights_path):
    for p in sorted(dev_images.glob("*.JPEG"))[:4]:
        shutil.copy(p, tmp_path)
    res = subprocess.run(
        [sys.executable, "benchmarks/inference.py", "--images", str(tmp_path), "--seconds", "0.05"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "MODEL_WEIGHTS": str(weights_path),
            "MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "HOME": str(tmp_path),
        },
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out["model_img_s"]) == {"onnxruntime", "channels_last", "torchscript", "torch"}
    assert all(v > 0 for per_batch in out["model_img_s"].values() for v in per_batch.values())
    assert set(out["model_img_s"]["torch"]) == {"1", "8", "32", "64"}
    assert set(out["decode_img_s"]) == {"reference", "fast"}
    assert set(out["limit_ways_img_s"]) == {"shared", "per_core"}
    assert out["limit_img_s"] == max(out["limit_ways_img_s"].values()) > 0 and out["images"]["count"] == 4
