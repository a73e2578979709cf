"""Benchmark tests run each benchmark as a user does (`python -m benchmarks.NAME`) in a clean
environment: the real weights, and caches in the test's own folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def stack_env() -> dict:
    """The test stack's addresses and credentials (set by stack_settings), for a benchmark's clean environment."""
    return {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "S3_", "DATABASE_URL"))}


def run_benchmark(name: str, *args, tmp_path: Path, weights_path: Path, timeout: int = 600, **env) -> dict:
    """The benchmark's JSON on stdout (the test fails with its stderr when it exits non-zero)."""
    res = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            "PATH": "/usr/bin:/bin",
            "MODEL_WEIGHTS": str(weights_path),
            "MODEL_CACHE_DIR": str(tmp_path / "cache"),
            "HOME": str(tmp_path),
            **{k: str(v) for k, v in env.items()},
        },
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)
