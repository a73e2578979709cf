"""fit --labels from the stored embeddings: a linear head trained with no photo downloaded (the
photos are not even in the bucket), registered as kind `linear`, served on the base trunk as it
was validated; a key without an embedding sends the command back to the photos."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from training import from_embeddings

REPO = Path(__file__).resolve().parents[2]


def test_the_linear_fit_separates_separable_embeddings_and_stops_early():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.rand(3, 512, generator=g), dim=1)
    labels = torch.arange(300) % 3
    x = torch.nn.functional.normalize(centres[labels] + 0.02 * torch.randn(300, 512, generator=g), dim=1)
    train, val = list(range(0, 300, 2)), list(range(1, 300, 2))
    result = from_embeddings.fit(x, labels, train, val, 3, from_embeddings.LinearOptions(max_epochs=3000))
    predicted = (x[val] @ result.weight.T + result.bias).argmax(1)
    assert (predicted == labels[val]).float().mean() == 1.0
    assert result.best_epoch <= result.epochs < 3000  # stopped on the validation loss


@pytest.fixture(scope="module")
def embedded_coarse(migrated, coarse_dir, weights_path, tmp_path_factory):
    """The coarse folder's photos classified and embedded as a worker stores them, under keys
    that are NOT in the bucket, and a labels CSV of them."""
    from consumer.embedding import Embedder
    from db.connection import connect
    from db.embeddings import Embedding
    from db.queries import Prediction, write_batch
    from settings import Settings

    mp = pytest.MonkeyPatch()  # the stack's settings for this module, in-process and for the CLI
    env = {**migrated.env(), "MODEL_WEIGHTS": str(weights_path), "TORCH_THREADS": "2"}
    env["MODEL_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    for key, value in env.items():
        mp.setenv(key, value)
    settings = Settings(_env_file=None)
    embedder = Embedder(settings)
    photos = sorted(coarse_dir.glob("*/*"))
    keys = [f"emb-{uuid.uuid4().hex[:6]}/{p.parent.name}/{p.name}" for p in photos]
    vectors = embedder.embed([p.read_bytes() for p in photos])
    conn = connect(settings)
    preds = [Prediction(k, "squeezenet1_1", "x", 0.5, 0, [], "test") for k in keys]
    write_batch(conn, preds, vectors=[Embedding(k, embedder.key, v) for k, v in zip(keys, vectors)])
    conn.close()
    csv = tmp_path_factory.mktemp("labels") / "labels.csv"
    csv.write_text("image_key,category\n" + "".join(f'"{k}",{p.parent.name}\n' for k, p in zip(keys, photos)))
    yield settings, csv, keys, photos
    mp.undo()


def fit(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", "fit", *args],
        env=os.environ,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_fit_from_stored_embeddings_downloads_nothing_and_serves_what_it_validated(embedded_coarse):
    from consumer.images import load_tensor
    from consumer.serving import Loader
    from db import registry
    from db.connection import in_transaction

    settings, csv, keys, photos = embedded_coarse
    name = f"emb-{uuid.uuid4().hex[:6]}"
    res = fit("--labels", str(csv), "--name", name)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "from their stored embeddings (nothing downloaded)" in res.stdout
    mv = in_transaction(settings, lambda conn: registry.get(conn, name, 1))
    assert mv.kind == "linear" and mv.metrics["trained_from"] == "embeddings"
    assert mv.metrics["top1"] >= 0.65, mv.metrics["top1"]  # the network head's floor (tests/training/test_fit.py)
    served = Loader(settings).registered(mv)
    batch = torch.stack([load_tensor(p.read_bytes(), settings.max_image_pixels) for p in photos])
    models = Loader(settings).model_set([served], [])
    (prediction,) = models.predict(batch)
    right = sum(top[0].category == p.parent.name for top, p in zip(prediction.top_k, photos))
    assert right / len(photos) >= 0.8  # mostly photos it trained on


def test_a_key_without_an_embedding_sends_fit_back_to_the_photos(embedded_coarse, tmp_path):
    settings, csv, keys, _ = embedded_coarse
    partial = tmp_path / "labels.csv"
    partial.write_text(csv.read_text() + "emb-none/never-classified.jpg,dog\n")
    res = fit("--labels", str(partial), "--name", f"emb-{uuid.uuid4().hex[:6]}", "--max-epochs", "1")
    assert "1 of 241 labelled keys have no stored embedding: downloading the photos" in res.stderr
    # the photos were never put into the bucket: nothing to train on, said without a traceback
    assert res.returncode == 1 and "error: " in res.stderr and "Traceback" not in res.stderr


def test_with_the_database_unreachable_fit_says_so_and_goes_to_the_photos(weights_path, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("image_key,category\na.jpg,dog\nb.jpg,cat\nc.jpg,dog\nd.jpg,cat\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MODEL_WEIGHTS": str(weights_path),
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "S3_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_MAX_ATTEMPTS": "1",
    }
    res = subprocess.run(
        [sys.executable, "-m", "training", "fit", "--labels", str(labels), "--name", "offline"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "the stored embeddings could not be read" in res.stderr and "downloading the photos" in res.stderr
    assert res.returncode == 1 and "error: " in res.stderr and "Traceback" not in res.stderr


def test_fit_from_labels_trains_on_the_labels_given_in_the_viewer(embedded_coarse):
    """The project's current labels (a relabel and a taken-back label included) are what
    `fit --from-labels` trains on; the version is registered under the project's name."""
    from db import labels, registry
    from db.connection import in_transaction

    settings, _, keys, photos = embedded_coarse
    name = f"lab-{uuid.uuid4().hex[:6]}"
    categories = sorted({p.parent.name for p in photos})

    def label(conn):
        labels.create_project(conn, name, categories, "tests")
        for key, photo in zip(keys, photos):
            labels.add(conn, name, [key], categories[0], "ann", "key")  # first a wrong label...
            labels.add(conn, name, [key], photo.parent.name, "bob", "key")  # ...then the right one
        labels.add(conn, name, [keys[0]], None, "bob", "undo")  # and one taken back

    in_transaction(settings, label)
    res = fit("--from-labels", name)
    assert res.returncode == 0, res.stderr
    assert f"{name}: labels from the viewer" in res.stderr
    mv = in_transaction(settings, lambda conn: registry.get(conn, name, 1))
    assert mv.kind == "linear" and mv.categories == categories
    assert mv.metrics["train_images"] + mv.metrics["val_images"] == len(keys) - 1  # the taken-back one left out
    assert sum(mv.metrics["images_per_category"].values()) == len(keys) - 1
    assert mv.metrics["top1"] > 0.4  # the right labels, not the first wrong ones (chance: 1 in 8)


def test_fit_from_labels_says_what_is_missing_in_one_line(embedded_coarse):
    empty = fit("--from-labels", f"nothing-{uuid.uuid4().hex[:6]}")
    assert empty.returncode == 1 and "no labels for nothing-" in empty.stderr and "Traceback" not in empty.stderr
    down = subprocess.run(
        [sys.executable, "-m", "training", "fit", "--from-labels", "x1"],
        env={**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 2 and down.stderr.startswith("error: cannot read the labels: PostgreSQL")
    both = fit("--from-labels", "x1", "--labels", "a.csv")
    assert both.returncode == 2 and "one of DATA (a folder), --labels CSV or --from-labels NAME" in both.stderr
