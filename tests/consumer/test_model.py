import csv
import urllib.error

import pytest
import torch
import torchvision

from consumer.images import load_tensor
from consumer.model import WeightsError, load_classifier
from settings import Settings


@pytest.fixture(scope="module")
def classifier(weights_path):
    return load_classifier(Settings(_env_file=None, model_weights=weights_path, torch_threads=2))


def test_real_weights_reach_reference_accuracy_on_dev_photos(classifier, dev_images):
    rows = list(csv.DictReader((dev_images / "labels.csv").read_text().splitlines()))
    top1 = top5 = 0
    for i in range(0, len(rows), 50):
        chunk = rows[i : i + 50]
        batch = torch.stack([load_tensor((dev_images / r["filename"]).read_bytes(), 60_000_000) for r in chunk])
        for row, topk in zip(chunk, classifier.predict(batch)):
            names = [t.category for t in topk]
            top1 += names[0] == row["class_name"]
            top5 += row["class_name"] in names
    assert len(rows) == 500
    assert top1 / len(rows) >= 0.66, f"top-1 {top1 / len(rows):.3f}"
    assert top5 / len(rows) >= 0.86, f"top-5 {top5 / len(rows):.3f}"


def test_topk_is_sorted_probabilities_with_names(classifier, dev_images):
    path = next(dev_images.glob("*.JPEG"))
    (topk,) = classifier.predict(load_tensor(path.read_bytes(), 60_000_000)[None])
    assert len(topk) == 5
    confs = [t.confidence for t in topk]
    assert confs == sorted(confs, reverse=True) and 0 < sum(confs) <= 1.0001
    assert all(t.category == classifier.categories[t.class_index] for t in topk)
    assert len(classifier.categories) == 1000


def test_a_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_classifier(Settings(_env_file=None, model_weights=tmp_path / "nope.pth"))


def test_a_wrong_weights_file_is_refused(tmp_path):
    bad = tmp_path / "random.pth"
    torch.save({"features.0.weight": torch.randn(3, 3)}, bad)
    with pytest.raises(WeightsError, match="cannot load"):
        load_classifier(Settings(_env_file=None, model_weights=bad))


def test_without_any_weights_it_refuses_instead_of_using_random_ones(tmp_path, monkeypatch):
    # no MODEL_WEIGHTS, no shared weights, and torchvision's download fails (as offline)
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(WeightsError, match="refusing to run with random weights"):
        load_classifier(Settings(_env_file=None, shared_dir=tmp_path, model_weights=None))
