"""fit --init-from's training (training/from_map.py), without services: the start is the map,
and on the coarse photos with whole fine classes held out the trained mix scores at least what
the map does, and more where the photos' categories differ from the map's for a whole category.
Real logits of the dev photos from the real weights, computed once for the module."""

import io

import pytest
import torch

from benchmarks.category_maps import folds, relabel
from consumer.heads import MapHead
from settings import Settings
from training import class_map, dataset, from_map


@pytest.fixture(scope="module")
def coarse(shared_dir, coarse_dir, weights_path):
    """(map, labels in the map's categories, logits, mirrored logits) of the 240 coarse photos."""
    from consumer.weights import load_base_model

    settings = Settings(_env_file=None, model_weights=weights_path, torch_threads=2)
    torch.set_num_threads(2)
    cmap = class_map.read_class_map(shared_dir / "images" / "coarse.csv")
    ds = dataset.load(dataset.from_folder(coarse_dir, settings.max_image_bytes), settings.max_image_pixels)
    assert ds.categories == cmap.categories
    base, _, _ = load_base_model(settings, "squeezenet1_1")
    images, idx = [img for img, _ in ds.images], list(range(len(ds.images)))
    logits = from_map.imagenet_logits(base, images, idx)
    mirrors = from_map.imagenet_logits(base, images, idx, mirror=True)
    return cmap, [y for _, y in ds.images], logits, mirrors


def top1(head, logits, labels) -> float:
    return float((head.probabilities(from_map.Logits(logits)).argmax(1) == torch.as_tensor(labels)).float().mean())


def held_out(coarse, labels, seed=0):
    """Top-1 of (the map, the trained mix) pooled over 5 folds of held-out fine classes, and the
    best epochs (0: the start was kept)."""
    cmap, _, logits, mirrors = coarse
    y = torch.tensor(labels)
    map_head = MapHead(cmap.categories, cmap.class_category, "base")
    right_map = right_mix = 0
    epochs = []
    for held in folds(labels, 5, seed):
        rest = sorted(set(range(len(labels))) - set(held))
        tr, va = dataset.split([labels[i] for i in rest], 0.2, seed)
        tr, va = [rest[i] for i in tr], [rest[i] for i in va]
        start = from_map.start_of_map(cmap.class_category, len(cmap.categories))
        result = from_map.fit(
            torch.cat([logits[tr], mirrors[tr]]), y[tr].repeat(2), logits[va], y[va], start, from_map.MixOptions()
        )
        mix = from_map.head(result.shares, result.log_temperature, cmap.categories)
        right_map += top1(map_head, logits[held], y[held]) * len(held)
        right_mix += top1(mix, logits[held], y[held]) * len(held)
        epochs.append(result.best_epoch)
    return right_map / len(labels), right_mix / len(labels), epochs


def test_the_start_serves_what_the_map_serves(coarse):
    cmap, _, logits, _ = coarse
    mix, log_t = from_map.start_of_map(cmap.class_category, len(cmap.categories))
    buf = io.BytesIO()  # through the artefact's format, as a worker reads it
    torch.save({"shares": from_map.shares_of(mix), "log_temperature": log_t}, buf)
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    as_mix = from_map.head(state["shares"], state["log_temperature"], cmap.categories)
    as_map = MapHead(cmap.categories, cmap.class_category, "base")
    outputs = from_map.Logits(logits)
    assert (as_mix.probabilities(outputs) - as_map.probabilities(outputs)).abs().max() < 1e-6
    again = from_map.start_of_mix(state["shares"], state["log_temperature"])  # a mix version's start
    assert torch.allclose(again[0], mix, atol=1e-9) and float(again[1]) == 0.0


def test_on_fine_classes_it_never_saw_it_scores_at_least_the_map(coarse):
    cmap, labels, _, _ = coarse
    map_top1, mix_top1, epochs = held_out(coarse, labels)
    print(f"\nheld-out top-1: map {map_top1:.3f}, from the map {mix_top1:.3f}; best epochs {epochs}")
    assert map_top1 == pytest.approx(230 / 240)  # the 0.958, every photo held out once
    assert any(epochs) and mix_top1 >= map_top1  # it trained, and lost nothing to the map


def test_a_category_filed_under_another_is_learnt_for_classes_without_photos(coarse):
    """The user files reptile_amphibian photos under sea_life; the map still says otherwise. Held-out
    reptile photos are of fine classes no training photo has: only the category's shift carries."""
    cmap, labels, _, _ = coarse
    merged = relabel("merged_category", labels, [], cmap.categories, 0)
    map_top1, mix_top1, _ = held_out(coarse, merged)
    print(f"\nheld-out top-1 with reptile_amphibian filed under sea_life: map {map_top1:.3f}, mix {mix_top1:.3f}")
    # the map gets none of the 20 relabelled photos right; a plain pull towards the map stays
    # within a photo or two of it (training/from_map.py, MixOptions.pull)
    assert map_top1 == pytest.approx(213 / 240) and mix_top1 >= map_top1 + 0.04


def test_classes_no_photo_touches_keep_the_maps_choice_unless_their_category_moved(coarse):
    """reptile_amphibian filed under sea_life, trained on 80% of the photos: every class of the
    category follows it, the ones no photo touches too, and no class of another category moves."""
    cmap, labels, logits, mirrors = coarse
    y = torch.tensor(relabel("merged_category", labels, [], cmap.categories, 0))
    tr, va = dataset.split(y.tolist(), 0.2, 0)
    views = torch.cat([logits[tr], mirrors[tr]])
    start = from_map.start_of_map(cmap.class_category, len(cmap.categories))
    result = from_map.fit(views, y[tr].repeat(2), logits[va], y[va], start, from_map.MixOptions())
    before, after = start[0].argmax(0), result.shares.argmax(0)
    reptiles = cmap.class_category == cmap.categories.index("reptile_amphibian")
    untouched = torch.softmax(views, dim=1).max(0).values < 0.05  # under 5% in every training photo
    assert int((reptiles & untouched).sum()) >= 5
    assert (after[reptiles] == cmap.categories.index("sea_life")).all()
    assert torch.equal(after[~reptiles], before[~reptiles])


def test_onto_simplex_projects_each_column():
    v = torch.randn(9, 1000) * 3
    p = from_map._onto_simplex(v)
    assert (p >= 0).all() and torch.allclose(p.sum(0), torch.ones(1000), atol=1e-5)
    assert torch.allclose(from_map._onto_simplex(p), p, atol=1e-6)  # a point of the simplex stays
    one_hot = torch.eye(9)[:, [0] * 1000]
    assert torch.equal(from_map._onto_simplex(one_hot), one_hot)


def test_a_category_shift_reaches_classes_no_photo_shows():
    """Synthetic: the map puts classes 0-9 in 'a', 10-19 in 'b', 20-29 in 'c', the rest in none.
    The user files photos of classes 0-4 under 'b'; classes 5-9 are in no photo, yet move with
    their category, while 'b', 'c' and the unmapped classes stay where the map put them."""
    class_category = torch.full((1000,), -1)
    class_category[:10], class_category[10:20], class_category[20:30] = 0, 1, 2

    def photos(classes):
        logits = torch.zeros(len(classes), 1000)
        logits[torch.arange(len(classes)), torch.tensor(classes)] = 8.0  # each its class at 0.75
        return logits

    train = [0, 1, 2, 3, 4] * 2 + list(range(10, 30))
    train_labels = torch.tensor([1] * 20 + [2] * 10)
    val = [0, 1, 2, 3, 4, 20, 21, 22, 23, 24]
    val_labels = torch.tensor([1] * 5 + [2] * 5)
    start = from_map.start_of_map(class_category, 3)
    result = from_map.fit(photos(train), train_labels, photos(val), val_labels, start, from_map.MixOptions(), views=1)
    rows = result.shares.argmax(0)
    assert rows[:20].tolist() == [1] * 20, rows[:10]  # 5-9 moved to 'b' though no photo shows them
    assert rows[20:30].tolist() == [2] * 10 and (rows[30:] == 3).all()
