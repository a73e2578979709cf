"""`python -m benchmarks.similar_search` embeds the dev photos, measures every index at a small
size and prints well-formed figures (the figures at 100k and 1M: benchmarks/results)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_search_benchmark_measures_exact_and_ivf(tmp_path, weights_path, shared_dir):
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.similar_search", "--sizes", "3000", "--out", str(tmp_path / "s.json")],
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
    assert json.loads((tmp_path / "s.json").read_text()) == out
    assert out["real_vectors"] == 1000 and out["queries"] == 500
    (size,) = out["sizes"]
    assert size["vectors"] == 3000 and size["copy_finds_its_photo_first_exact"] >= 0.95
    assert size["exact_f16"]["photo_copies"]["recall_at_10"] >= 0.95  # float16 only reorders near-ties
    probes = size["ivf_f16"]["by_probes"]
    assert str(size["ivf_f16"]["product_probes"]) in probes
    for by_set in probes.values():
        for figures in by_set.values():
            assert 0 <= figures["recall_at_10"] <= 1 and 0 < figures["p50_ms"] <= figures["p95_ms"]
