"""`python -m benchmarks.heads` runs every configuration and prints well-formed figures (the
figures themselves are read by people: benchmarks/results/heads.json)."""

import json

from tests.benchmarks import run_benchmark


def test_heads_benchmark_prints_each_configuration(tmp_path, weights_path, shared_dir):
    out = run_benchmark(
        "heads",
        "--images",
        8,
        "--rounds",
        2,
        "--out",
        tmp_path / "h.json",
        tmp_path=tmp_path,
        weights_path=weights_path,
        SHARED_DIR=shared_dir,
        TORCH_THREADS=2,
    )
    assert json.loads((tmp_path / "h.json").read_text()) == out
    figures = out["cpu_ms_per_image"]
    assert set(figures) == {
        "imagenet",
        "imagenet+shadow_head",
        "imagenet+map_shadow",
        "imagenet+3_heads",
        "imagenet+own_trunk_shadow",
    }
    assert figures["imagenet"]["ratio_to_imagenet"] == 1.0
    assert all(0 < f["min"] <= f["median"] <= f["max"] for f in figures.values())
    assert out["setup"]["images_per_round"] == 8 and out["setup"]["rounds"] == 2
