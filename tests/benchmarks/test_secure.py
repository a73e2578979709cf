"""benchmarks/secure.py runs on a plaintext stack and a locked-down one of its own, small, and
reports both (the figures themselves come from the full run: benchmarks/results/secure.json)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_both_stacks_and_prints_their_figures(stack_libs, shared_dir, weights_path, tmp_path):
    env = {
        **os.environ,
        "VS_LIBS_DIR": str(stack_libs),
        "SHARED_DIR": str(shared_dir),
        "MODEL_WEIGHTS": str(weights_path),
        "MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }
    cmd = [sys.executable, "-m", "benchmarks.secure", "--images", "60", "--warmup-images", "0"]
    proc = subprocess.run(
        [*cmd, "--out-dir", str(tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads((tmp_path / "secure.json").read_text())
    assert json.loads(proc.stdout) == figures and (tmp_path / "secure.png").stat().st_size > 0
    for run in ("plaintext", "secure"):
        assert figures[run]["img_s"] > 0
        assert set(figures[run]["cpu_ms_per_image"]) == {"postgres", "kafka", "s3", "workers"}
        assert figures[run]["cpu_ms_per_image"]["workers"] > 0
    assert figures["secure_over_plaintext_img_s"] > 0 and figures["secure_over_plaintext_cpu_per_image"] > 0
