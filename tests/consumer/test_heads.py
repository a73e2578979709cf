"""One pass of the trunk, every head after it: each head gives what its whole network gives
(the full model through the same engine), on the 500 dev photos."""

import csv

import pytest
import torch
import torchvision

from consumer.engines import build_engine, onnx_cache_path
from consumer.heads import ConvHead, MapHead, parse_class_map
from consumer.serving import Loader, Served
from settings import Settings

FP32_ENGINES = ("onnxruntime", "torch", "channels_last", "torchscript")


def settings(weights_path, engine, cache) -> Settings:
    return Settings(
        _env_file=None, model_weights=weights_path, model_engine=engine, torch_threads=2, model_cache_dir=cache
    )


@pytest.fixture(scope="module")
def custom_network(weights_path):
    """A 5-category network as `training fit` makes one: the base's features, a new head."""
    base = torchvision.models.squeezenet1_1()
    base.load_state_dict(torch.load(weights_path, weights_only=True))
    model = torchvision.models.squeezenet1_1(num_classes=5)
    model.features.load_state_dict(base.features.state_dict())
    torch.manual_seed(0)
    torch.nn.init.normal_(model.classifier[1].weight, std=0.05)
    return base.eval(), model.eval()


@pytest.mark.parametrize("engine", FP32_ENGINES)
def test_trunk_and_head_give_the_full_networks_logits(engine, weights_path, dev_batches, custom_network, tmp_path):
    """Within 1e-5 of the full network through the same engine, or, where that engine's own
    full network already differs more from plain torch's (its last convolution fused another
    way: torchscript, channels_last), within that difference."""
    s = settings(weights_path, engine, tmp_path)
    base, custom = custom_network
    trunk = Loader(s).base("squeezenet1_1")
    head = ConvHead.of(custom.state_dict(), list("abcde"), trunk.key)
    networks = {"imagenet": (base, trunk.classifier), "custom": (custom, head)}
    full = {
        name: build_engine(engine, network, threads=2, onnx_path=onnx_cache_path(tmp_path, name, "full"))
        for name, (network, _) in networks.items()
    }
    worst = dict.fromkeys(networks, 0.0)
    engine_vs_torch = dict.fromkeys(networks, 0.0)
    for batch in dev_batches:
        with torch.inference_mode():
            features = trunk.run(batch)
            for name, (network, h) in networks.items():
                want = full[name](batch).float()
                diff = float((want - h.logits(features)).abs().max())
                worst[name] = max(worst[name], diff)
                if diff > 1e-5:  # how far this engine's own full network is from plain torch's
                    engine_vs_torch[name] = max(engine_vs_torch[name], float((want - network(batch)).abs().max()))
    print(engine, "trunk+head vs full:", worst, "full vs plain torch (where needed):", engine_vs_torch)
    assert all(worst[n] <= max(1e-5, engine_vs_torch[n]) for n in networks), (worst, engine_vs_torch)
    assert sum(len(b) for b in dev_batches) == 500


def test_a_category_map_is_the_sum_of_its_classes_probabilities(weights_path, dev_batches, shared_dir, tmp_path):
    rows = [(int(r["class_index"]), r["coarse"]) for r in csv.DictReader((shared_dir / "images" / "coarse.csv").open())]
    categories, index = parse_class_map(rows)
    loader = Loader(settings(weights_path, "onnxruntime", tmp_path))
    trunk = loader.base("squeezenet1_1")
    models = loader.model_set([Served("coarse", 1, MapHead(categories, index, trunk.key))], [])
    batch = dev_batches[0]
    (prediction,) = models.predict(batch)
    with torch.inference_mode():
        probs = torch.softmax(trunk.classifier.logits(trunk.run(batch)), dim=1)
    for image, top in enumerate(prediction.top_k):
        by_hand = {c: sum(float(probs[image, i]) for i, cat in rows if cat == c) for c in categories}
        best = max(by_hand, key=by_hand.get)
        assert top[0].category == best and top[0].confidence == pytest.approx(by_hand[best], abs=1e-5)
    assert categories == sorted({c for _, c in rows}) and int((index >= 0).sum()) == len(rows)


def test_a_class_mapped_twice_or_out_of_range_is_refused():
    with pytest.raises(ValueError, match="both"):
        parse_class_map([(1, "a"), (1, "b")])
    with pytest.raises(ValueError, match="not an ImageNet class"):
        parse_class_map([(1000, "a")])


def test_every_served_version_comes_from_one_trunk_pass(
    weights_path, dev_batches, custom_network, shared_dir, tmp_path, monkeypatch
):
    """ImageNet's head, a custom production head, a custom shadow and a category map: the
    trunk runs once per chunk, and one convolution serves every head (the map reads
    ImageNet's logits), giving what each head alone gives."""
    loader = Loader(settings(weights_path, "onnxruntime", tmp_path))
    trunk = loader.base("squeezenet1_1")
    runs = []
    counted = trunk.run

    def run(batch):
        runs.append(len(batch))
        return counted(batch)

    loader.trunks[trunk.key] = type(trunk)(trunk.key, run, trunk.classifier)
    convolutions, logits = [], ConvHead.logits
    monkeypatch.setattr(
        ConvHead, "logits", lambda self, f: convolutions.append(len(self.categories)) or logits(self, f)
    )
    _, custom = custom_network
    head = ConvHead.of(custom.state_dict(), list("abcde"), trunk.key)
    rows = [(int(r["class_index"]), r["coarse"]) for r in csv.DictReader((shared_dir / "images" / "coarse.csv").open())]
    coarse = MapHead(*parse_class_map(rows), trunk.key)
    models = loader.model_set(
        [Served("squeezenet1_1", 0, trunk.classifier), Served("custom", 1, head)],
        [Served("custom", 2, head, "shadow"), Served("coarse", 1, coarse, "shadow")],
    )
    predictions = models.predict(dev_batches[0])
    assert runs == [50] and convolutions == [1005]  # ImageNet's 1000 and the custom head's 5, once
    assert [p.served.ref for p in predictions] == ["squeezenet1_1", "custom@1", "custom@2", "coarse@1"]
    assert all(len(p.top_k) == 50 for p in predictions)
    for served, prediction in zip((*models.production, *models.shadows), predictions):
        (alone,) = loader.model_set([served], []).predict(dev_batches[0])
        for fused_top, alone_top in zip(prediction.top_k, alone.top_k):
            assert [t.class_index for t in fused_top] == [t.class_index for t in alone_top]
            assert [t.confidence for t in fused_top] == pytest.approx([t.confidence for t in alone_top], abs=1e-6)


def test_the_embedding_comes_from_the_same_pass(weights_path, dev_batches, tmp_path):
    loader = Loader(settings(weights_path, "onnxruntime", tmp_path))
    trunk = loader.base("squeezenet1_1")
    models = loader.model_set([Served("squeezenet1_1", 0, trunk.classifier)], [])
    runs, counted = [], trunk.run
    models.trunks[trunk.key] = type(trunk)(trunk.key, lambda b: runs.append(len(b)) or counted(b), trunk.classifier)
    batch = dev_batches[1][:8]
    predictions, embeddings = models.predict_and_embed(batch, trunk.key)
    assert runs == [8] and embeddings.shape == (8, 512)
    with torch.inference_mode():
        pooled = counted(batch).mean(dim=(2, 3))
    assert torch.allclose(embeddings, pooled / pooled.norm(dim=1, keepdim=True), atol=1e-6)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(8))
    assert [t[0].class_index for t in predictions[0].top_k] == [
        t[0].class_index for t in models.predict(batch)[0].top_k
    ]
