"""`python -m benchmarks.inference` runs and prints well-formed figures (its numbers are read by people)."""

import shutil

from tests.benchmarks import run_benchmark


def test_inference_benchmark_prints_json(tmp_path, dev_images, weights_path):
    for p in sorted(dev_images.glob("*.JPEG"))[:4]:
        shutil.copy(p, tmp_path)
    out = run_benchmark(
        "inference", "--images", tmp_path, "--seconds", 0.05, tmp_path=tmp_path, weights_path=weights_path
    )
    assert set(out["model_img_s"]) == {"onnxruntime", "onnxruntime-int8", "channels_last", "torchscript", "torch"}
    assert all(v > 0 for per_batch in out["model_img_s"].values() for v in per_batch.values())
    assert set(out["model_img_s"]["torch"]) == {"1", "4", "32", "64"}
    int8 = out["int8"]
    assert 0 <= int8["agreement"] <= 1 and "int8_top1" not in int8  # no labels.csv in this folder
    assert set(int8["int8_over_fp32"]) == {"1", "4", "32"} and all(v > 0 for v in int8["int8_over_fp32"].values())
    assert set(out["decode_img_s"]) == {"reference", "fast"}
    assert set(out["limit_ways_img_s"]) == {"shared", "per_core"}
    assert out["limit_img_s"] == max(out["limit_ways_img_s"].values()) > 0 and out["images"]["count"] == 4
