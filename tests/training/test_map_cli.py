"""python -m training map and fit --init-from on the real stack: a map registered from
coarse.csv serves the sum of its classes' probabilities, a mix trained from it is the next
version, and bad input is one line with the right exit status."""

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch

from common import artefacts
from consumer.images import load_tensor
from consumer.model import load_registered
from consumer.weights import load_base_model
from db import registry
from db.connection import connect

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args], env=os.environ, cwd=REPO, capture_output=True, text=True, timeout=900
    )


def version(settings, name: str, number: int) -> registry.ModelVersion:
    conn = connect(settings)
    try:
        with conn:
            return registry.get(conn, name, number)
    finally:
        conn.close()


def one_line_error(res: subprocess.CompletedProcess) -> str:
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    return errors[0]


@pytest.fixture(scope="module")
def mapped(migrated, shared_dir, weights_path, tmp_path_factory):
    """`training map NAME --classes coarse.csv` once for the module, on the stack's settings."""
    from settings import Settings

    mp = pytest.MonkeyPatch()
    cache = str(tmp_path_factory.mktemp("cache"))
    env = {**migrated.env(), "MODEL_WEIGHTS": str(weights_path), "TORCH_THREADS": "2", "MODEL_CACHE_DIR": cache}
    for key, value in env.items():
        mp.setenv(key, value)
    name = f"map-{uuid.uuid4().hex[:6]}"
    res = cli("map", name, "--classes", str(shared_dir / "images" / "coarse.csv"))
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    yield name, Settings(_env_file=None), res.stdout
    mp.undo()


def test_map_registers_a_candidate_of_kind_map(mapped, shared_dir):
    from training.class_map import read_class_map

    name, settings, out = mapped
    assert f"registered {name}@1 (candidate)" in out and "kind map" in out
    mv = version(settings, name, 1)
    cmap = read_class_map(shared_dir / "images" / "coarse.csv")
    assert mv.kind == "map" and mv.stage == "candidate" and mv.categories == cmap.categories
    assert mv.data_fingerprint == cmap.fingerprint() and "no evaluation" in mv.metrics["note"]
    manifest = json.loads(artefacts.get(settings.s3_client(), mv.uri, artefacts.MANIFEST))
    assert manifest["kind"] == "map" and manifest["category_column"] == "coarse"
    assert sum(len(classes) for classes in manifest["map"].values()) == 470
    assert {"class_index": 0, "class_name": "tench"} in manifest["map"]["sea_life"]


def test_the_served_map_is_the_sum_of_its_classes_probabilities(mapped, shared_dir, coarse_dir):
    """Through S3, the hash check and the workers' engine, against a hand computation in torch."""
    name, settings, _ = mapped
    classifier = load_registered(settings, version(settings, name, 1))
    rows = list(csv.DictReader((shared_dir / "images" / "coarse.csv").open()))
    paths = sorted(coarse_dir.glob("*/*"))
    batch = torch.stack([load_tensor(p.read_bytes(), 10**8, True) for p in paths])
    base, _, _ = load_base_model(settings, "squeezenet1_1")
    with torch.no_grad():
        probs = torch.softmax(base(batch), dim=1)
    by_hand = []
    for p in probs:
        sums: dict[str, float] = {}
        for r in rows:
            sums[r["coarse"]] = sums.get(r["coarse"], 0.0) + float(p[int(r["class_index"])])
        by_hand.append(max(sums.items(), key=lambda kv: kv[1]))
    served = [t[0] for t in classifier.predict(batch)]
    assert [t.category for t in served] == [c for c, _ in by_hand]
    assert max(abs(t.confidence - s) for t, (_, s) in zip(served, by_hand)) < 1e-4
    top1 = sum(t.category == p.parent.name for t, p in zip(served, paths)) / len(paths)
    assert round(top1, 3) == 0.958  # the figure: 230 of the 240 photos


def test_map_eval_stores_the_maps_metrics_on_a_labelled_folder(mapped, shared_dir, coarse_dir):
    name, settings, _ = mapped
    other = f"{name}-eval"
    res = cli("map", other, "--classes", str(shared_dir / "images" / "coarse.csv"), "--eval", str(coarse_dir))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "the map on" in res.stdout and "no training" in res.stdout
    mv = version(settings, other, 1)
    assert mv.kind == "map" and mv.metrics["val_images"] == 240 and mv.metrics["train_images"] == 0
    assert mv.metrics["top1"] == 0.9583 and sum(map(sum, mv.metrics["confusion"])) == 240  # 230 of 240
    assert artefacts.get(settings.s3_client(), mv.uri, artefacts.CONFUSION_PNG)[:4] == b"\x89PNG"


def test_fit_init_from_the_map_registers_the_next_version_a_mix(mapped, coarse_dir):
    name, settings, _ = mapped
    res = cli("fit", str(coarse_dir), "--name", name, "--init-from", f"{name}@1")
    assert res.returncode == 0, res.stderr[-3000:] + res.stdout[-3000:]
    assert f"registered {name}@2 (candidate)" in res.stdout and "kind mix" in res.stdout
    mv = version(settings, name, 2)
    assert mv.kind == "mix" and mv.categories == version(settings, name, 1).categories
    assert mv.metrics["init_from"] == f"{name}@1" and mv.metrics["val_images"] == 49
    # it started from the map read back from S3: the map alone gets 47 of these 49 photos right
    assert mv.metrics["init_top1"] == 0.9592 and mv.metrics["top1"] >= 0.9
    classifier = load_registered(settings, mv)
    paths = sorted(coarse_dir.glob("*/*"))[::10]
    tops = classifier.predict(torch.stack([load_tensor(p.read_bytes(), 10**8, True) for p in paths]))
    assert sum(t[0].category == p.parent.name for t, p in zip(tops, paths)) >= 0.8 * len(paths)
    assert cli("promote", f"{name}@2").returncode == 0 and cli("promote", f"{name}@1").returncode == 0  # rollback
    assert version(settings, name, 1).stage == "production" and version(settings, name, 2).stage == "retired"


@pytest.mark.parametrize(
    "body, message",
    [
        (None, "no such file"),
        ("class_index,coarse\n1,fish\n1000,dog\n", "row 3: class_index '1000' is not an ImageNet class"),
        ("class_index,coarse\n1,fish\n2,dog\n1,dog\n", "row 4: class 1 is mapped to 'dog', and to 'fish' on row 2"),
    ],
)
def test_a_bad_classes_csv_is_one_line_and_exit_1(mapped, tmp_path, body, message):
    path = tmp_path / "map.csv"
    if body is not None:
        path.write_text(body)
    res = cli("map", f"bad-{uuid.uuid4().hex[:6]}", "--classes", str(path))
    assert res.returncode == 1 and message in one_line_error(res), res.stderr


def test_init_from_a_network_version_or_a_missing_one_is_exit_2(mapped, coarse_dir):
    """Refused before any photo is decoded (a registry row suffices: its kind is what is checked)."""
    name, settings, _ = mapped
    network = f"net-{uuid.uuid4().hex[:6]}"
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            uri = f"s3://models/registry/{network}/1/"
            row = registry.ModelVersion(network, 1, "0" * 64, uri, "squeezenet1_1", ["a", "b"], {}, {}, "")
            registry.insert(cur, row)
    finally:
        conn.close()
    res = cli("fit", str(coarse_dir), "--name", name, "--init-from", f"{network}@1")
    assert res.returncode == 2 and "is a version of kind network" in one_line_error(res)
    res = cli("fit", str(coarse_dir), "--name", name, "--init-from", f"{name}@99")
    assert res.returncode == 2 and f"no model {name}@99" in one_line_error(res)
    assert "decoding" not in res.stderr


def test_a_category_the_map_lacks_is_exit_1(mapped, coarse_dir, tmp_path):
    name, _, _ = mapped
    for category, source in (("dog", "dog"), ("vehicles", "bird")):
        (tmp_path / category).mkdir()
        for p in sorted(coarse_dir.glob(f"{source}/*"))[:2]:
            (tmp_path / category / p.name).symlink_to(p.resolve())
    res = cli("fit", str(tmp_path), "--name", name, "--init-from", f"{name}@1")
    assert res.returncode == 1 and "'vehicles' that the map does not" in one_line_error(res)
