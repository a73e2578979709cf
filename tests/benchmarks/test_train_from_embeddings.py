"""benchmarks/train_from_embeddings.py on the real stack at a small size: both paths register a
version and are timed (the figures for 10,000 keys: benchmarks/results)."""

from tests.benchmarks import run_benchmark, stack_env


def test_both_paths_train_and_are_timed(stack_settings, weights_path, shared_dir, tmp_path):
    env = stack_env()
    out = run_benchmark(
        "train_from_embeddings",
        "--keys",
        300,
        "--photo-keys",
        250,
        "--seeds",
        0,
        tmp_path=tmp_path,
        weights_path=weights_path,
        timeout=900,
        SHARED_DIR=shared_dir,
        TORCH_THREADS=2,
        TMPDIR=tmp_path,
        **env,
    )
    assert out["keys"] == 300 and out["distinct_photos"] == 240 and out["embeddings"]["fit_seconds"] > 0
    both = out["at_photo_keys"]
    assert 0 < both["fit_seconds"]["embeddings"] < both["fit_seconds"]["photos"]
    assert min(both["peak_resident_gb"].values()) > 0
    assert out["top1_distinct_photos"] == {}
