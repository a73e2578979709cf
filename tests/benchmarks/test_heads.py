"""`python -m benchmarks.heads` runs every configuration and prints well-formed figures (the
figures themselves are read by people: benchmarks/results/heads.json)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_heads_benchmark_prints_each_configuration(tmp_path, weights_path, shared_dir):
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.heads", "--images", "8", "--rounds", "2", "--out", str(tmp_path / "h.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            "PATH": "/usr/bin:/bin",
            "MODEL_WEIGHTS": str(weights_path),
            "SHARED_DIR": str(shared_dir),
            "MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "HOME": str(tmp_path),
            "TORCH_THREADS": "2",
        },
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
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
