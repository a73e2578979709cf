"""The int8 engine (consumer/quantize.py) on the real weights and the dev photos: its top-1
accuracy within 1 point of fp32, its agreement with fp32, calibration sets too small refused,
the quantised graph cached per calibration set, and a custom head quantised the same way.

It calibrates on one half of the dev photos (split by a hash of the name) and is judged on all
500 (what docs/models/inference.md reports) and, printed beside it, on the other half alone."""

import csv
import hashlib

import pytest
import torch
import torchvision

from consumer.engines import build_engine
from consumer.images import load_tensor
from consumer.model import load_classifier
from consumer.quantize import MIN_CALIBRATION_IMAGES, CalibrationError, calibration_images, int8_path, quantize
from settings import Settings


def in_calibration_half(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 2 == 0


@pytest.fixture(scope="module")
def calib_dir(dev_images, tmp_path_factory):
    d = tmp_path_factory.mktemp("calibration")
    for p in sorted(dev_images.glob("*.JPEG")):
        if in_calibration_half(p.name):
            (d / p.name).symlink_to(p)
    return d


@pytest.fixture(scope="module")
def dev_set(dev_images):
    rows = list(csv.DictReader((dev_images / "labels.csv").read_text().splitlines()))
    tensors = [load_tensor((dev_images / r["filename"]).read_bytes(), 60_000_000) for r in rows]
    return rows, [torch.stack(tensors[i : i + 50]) for i in range(0, len(tensors), 50)]


def top1(classifier, batches) -> list[int]:
    return [topk[0].class_index for b in batches for topk in classifier.predict(b)]


def settings(weights_path, cache, engine, calib_dir=None, **extra) -> Settings:
    return Settings(
        _env_file=None,
        model_weights=weights_path,
        model_engine=engine,
        torch_threads=2,
        model_cache_dir=cache,
        model_calibration_dir=calib_dir,
        **extra,
    )


def test_int8_accuracy_is_within_one_point_of_fp32(weights_path, calib_dir, dev_set, tmp_path):
    """Pure int8 (no static recipe tried here got closer than ~1.2 points: benchmarks/HISTORY.md) and the
    engine as served, which re-checks close calls in fp32 (MODEL_INT8_RECHECK_MARGIN)."""
    rows, batches = dev_set
    truth = [int(r["class_index"]) for r in rows]
    held = [i for i, r in enumerate(rows) if not in_calibration_half(r["filename"])]
    fp32 = top1(load_classifier(settings(weights_path, tmp_path, "onnxruntime")), batches)
    pure = top1(
        load_classifier(settings(weights_path, tmp_path, "onnxruntime-int8", calib_dir, model_int8_recheck_margin=0)),
        batches,
    )
    served = top1(load_classifier(settings(weights_path, tmp_path, "onnxruntime-int8", calib_dir)), batches)

    def acc(pred, idx=range(len(truth))):
        return sum(pred[i] == truth[i] for i in idx) / len(idx)

    def agreement(pred):
        return sum(a == b for a, b in zip(pred, fp32)) / len(fp32)

    print(
        f"\nINT8 on 500 dev photos: fp32 top-1 {acc(fp32):.3f}; pure int8 {acc(pure):.3f} (agreement "
        f"{agreement(pure):.3f}); served int8 {acc(served):.3f} (agreement {agreement(served):.3f}); "
        f"held-out half: fp32 {acc(fp32, held):.3f}, served int8 {acc(served, held):.3f}"
    )
    assert acc(served) >= acc(fp32) - 0.01
    assert acc(served, held) >= acc(fp32, held) - 0.01
    assert agreement(served) >= 0.99  # measured 0.996
    # pure int8: measured 0.960; the naive recipe (everything quantised, MinMax) agreed on 0.934
    assert agreement(pure) >= 0.95 and acc(pure) >= acc(fp32) - 0.03


def test_the_int8_graph_is_cached_per_calibration_set(weights_path, calib_dir, tmp_path, dev_images):
    s = settings(weights_path, tmp_path, "onnxruntime-int8", calib_dir)
    load_classifier(s)
    graphs = list(tmp_path.glob("*-int8-*.onnx"))
    assert len(graphs) == 1
    mtime = graphs[0].stat().st_mtime_ns
    load_classifier(s)  # the next start reuses it
    assert graphs[0].stat().st_mtime_ns == mtime
    fp32 = next(p for p in tmp_path.glob("*.onnx") if "-int8-" not in p.name)
    images = calibration_images(calib_dir, 300)
    assert int8_path(fp32, images) == graphs[0]
    assert int8_path(fp32, images[:-1]) != graphs[0]  # another calibration set, another graph
    assert not list(tmp_path.glob("tmp*"))


def test_a_calibration_set_too_small_is_refused(weights_path, dev_images, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted(dev_images.glob("*.JPEG"))[:20]:
        (few / p.name).symlink_to(p)
    with pytest.raises(CalibrationError, match=f"has 20 images.*at least {MIN_CALIBRATION_IMAGES}"):
        load_classifier(settings(weights_path, tmp_path, "onnxruntime-int8", few))
    junk = tmp_path / "junk"  # enough files named like photos, too few of them photos
    junk.mkdir()
    for p in sorted(dev_images.glob("*.JPEG"))[:60]:
        (junk / p.name).symlink_to(p)
    for i in range(80):
        (junk / f"text-{i}.jpg").write_text("not an image")
    with pytest.raises(CalibrationError, match="only 60 of 140 calibration files decode"):
        load_classifier(settings(weights_path, tmp_path, "onnxruntime-int8", junk))
    with pytest.raises(CalibrationError, match="not a directory"):
        load_classifier(settings(weights_path, tmp_path, "onnxruntime-int8", tmp_path / "absent"))


def test_a_custom_head_quantises_the_same_way(weights_path, calib_dir, tmp_path):
    """A model trained on 8 categories (the base with a new head, as training/ builds it)."""
    model = torchvision.models.squeezenet1_1(weights=None, num_classes=8)
    state = torch.load(weights_path, map_location="cpu")
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=False)
    images = calibration_images(calib_dir, 120)
    engine = build_engine(
        "onnxruntime-int8",
        model.eval(),
        threads=1,
        onnx_path=tmp_path / "custom.onnx",
        int8=lambda p: quantize(p, images, 60_000_000),
    )
    batch = torch.stack([load_tensor(p.read_bytes(), 60_000_000) for p in images[:4]])
    with torch.inference_mode():
        reference = model(batch)
    got = engine(batch)
    assert got.shape == (4, 8)
    # the head is untrained (its logits are close together): compare the logits, not the argmax
    assert torch.nn.functional.cosine_similarity(got, reference).min() >= 0.95
    assert list(tmp_path.glob("custom-int8-*.onnx"))
