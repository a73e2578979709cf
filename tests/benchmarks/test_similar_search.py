"""`python -m benchmarks.similar_search` embeds the dev photos, measures every index at a small
size and prints well-formed figures (the figures at 100k and 1M: benchmarks/results)."""

import json

from tests.benchmarks import run_benchmark


def test_the_search_benchmark_measures_exact_and_ivf(tmp_path, weights_path, shared_dir):
    out = run_benchmark(
        "similar_search",
        "--sizes",
        3000,
        "--out",
        tmp_path / "s.json",
        tmp_path=tmp_path,
        weights_path=weights_path,
        SHARED_DIR=shared_dir,
        TORCH_THREADS=2,
    )
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
