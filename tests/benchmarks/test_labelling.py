"""benchmarks/labelling.py on the real stack at a small size: a labeller's key presses in
Chromium are timed, and Train registers a candidate (the figures at full size:
benchmarks/results/labelling.json)."""

from tests.benchmarks import run_benchmark, stack_env


def test_key_presses_are_timed_and_train_registers_a_candidate(stack_settings, weights_path, shared_dir, tmp_path):
    env = stack_env()
    out = run_benchmark(
        "labelling",
        "--labels",
        12,
        "--repeats",
        2,
        "--png",
        tmp_path / "labelling.png",
        tmp_path=tmp_path,
        weights_path=weights_path,
        timeout=900,
        SHARED_DIR=shared_dir,
        TORCH_THREADS=2,
        TMPDIR=tmp_path,
        **env,
    )
    assert out["photos"] == 240 and out["repeats"] == 2 and len(out["per_page"]) == 2
    assert out["key_to_next_image_ms"]["n"] >= 24 and len(out["timings_ms"]) == out["key_to_next_image_ms"]["n"]
    assert 0 < out["key_to_next_image_ms"]["p50"] <= out["key_to_next_image_ms"]["p95"]
    assert out["train_click_to_candidate_s"] > 0 and out["labels_trained"] == 24 + 16
    assert (tmp_path / "labelling.png").stat().st_size > 10_000
