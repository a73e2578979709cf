"""benchmarks/int8_ceiling.py: the folded-normalisation model it measures is the same model,
and its pipeline estimate is the arithmetic docs/performance.md states."""

import shutil

import numpy as np
import pytest
import torch

from benchmarks import int8_ceiling
from consumer.images import load_tensor
from consumer.weights import load_base_model
from settings import Settings
from tests.benchmarks import run_benchmark


def test_folding_the_normalisation_into_the_first_convolution_changes_no_answer(weights_path, dev_images):
    model, _, _ = load_base_model(Settings(_env_file=None, model_weights=weights_path))
    folded = int8_ceiling.PixelsIn(model).eval()
    paths = sorted(dev_images.glob("*.JPEG"))[:24]
    blobs = [p.read_bytes() for p in paths]
    with torch.inference_mode():
        reference = model(torch.stack([load_tensor(b, 10**8) for b in blobs]))
        pixels = torch.from_numpy(np.stack([int8_ceiling.hwc_pixels(b, False) for b in blobs]))
        got = folded(pixels)
    assert pixels.dtype == torch.uint8 and pixels.shape == (24, 224, 224, 3)
    assert torch.equal(got.argmax(1), reference.argmax(1))
    assert torch.allclose(got, reference, atol=1e-4), (got - reference).abs().max()


def test_a_padded_first_convolution_is_refused():
    model = torch.nn.Module()
    model.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1))
    with pytest.raises(ValueError, match="unpadded"):
        int8_ceiling.PixelsIn(model)


def test_the_pipeline_estimate_keeps_everything_but_the_model():
    pipeline = {
        "engines": {
            "onnxruntime": {
                "cpu_ms_per_image": {
                    "workers_decode": 2.5,
                    "workers_other": 0.5,
                    "workers_infer": 3.5,
                    "services": {"s3": 0.3, "kafka": 0.1, "postgres": 0.1},
                }
            }
        }
    }
    variants = {
        "fp32": {"ms_per_image": {"4": 4.0}, "quality": {}},
        # half fp32's time; at margin 0.05 a fifth of the photos run again in fp32
        "int8": {
            "ms_per_image": {"4": 2.0},
            "quality": {"0.0": {"rechecked_share": 0.0}, "0.05": {"rechecked_share": 0.2}},
        },
    }
    got = int8_ceiling.estimate(pipeline, variants)
    assert got["common_ms"] == 3.5 and got["fp32_model_ms"] == 3.5
    assert got["int8"]["0.0"] == round(7.0 / (3.5 + 1.75), 3)
    assert got["int8"]["0.05"] == round(7.0 / (3.5 + 1.75 + 0.7), 3)


def test_the_script_prints_every_variant_and_the_estimate(tmp_path, dev_images, weights_path):
    for p in sorted(dev_images.glob("*.JPEG"))[:8]:
        shutil.copy(p, tmp_path)
    out = run_benchmark(
        "int8_ceiling",
        "--images",
        tmp_path,
        tmp_path=tmp_path,
        weights_path=weights_path,
        timeout=900,
        MODEL_CALIBRATION_IMAGES=100,
    )
    variants = out["variants"]
    # OpenVINO is in the bench extra the test command installs
    assert set(variants) == {"fp32", "int8", "int8_all_layers", "openvino_int8_f32", "openvino_int8_default"}
    assert variants["openvino_int8_f32"]["float_precision"] == "<Type: 'float32'>" and out["images"]["count"] == 8
    assert variants["fp32"]["quality"]["0.0"]["agreement"] == 1.0 and "top1" not in variants["fp32"]["quality"]["0.0"]
    for v in variants.values():
        assert set(v["ms_per_image"]) == {"1", "4", "32"} and all(ms > 0 for ms in v["ms_per_image"].values())
        shares = [q["rechecked_share"] for q in v["quality"].values()]
        assert shares == sorted(shares)  # a wider margin never re-checks fewer photos
    for graph in ("int8", "int8_all_layers"):
        by_op = out["profile_batch_32"][graph]["by_op"]
        assert abs(sum(by_op.values()) - 1) < 0.01 and "QLinearConv" in by_op
        assert len(out["profile_batch_32"][graph]["top_nodes"]) == 5
    assert set(out["pipeline_estimate"]["int8"]) == {"0.0", "0.01", "0.02", "0.05"}
