"""benchmarks/live_s3.py runs end to end on a stack of its own, small, and reports both feeds
and the put -> row latency (the figures themselves come from the full run, not from here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_benchmark_feeds_the_workers_both_ways_and_prints_its_figures(stack_libs, shared_dir, tmp_path):
    out = tmp_path / "live.json"
    env = {**os.environ, "VS_LIBS_DIR": str(stack_libs), "SHARED_DIR": str(shared_dir)}
    cmd = [sys.executable, "-m", "benchmarks.live_s3", "--images", "60", "--latency-images", "10", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert json.loads(proc.stdout) == figures
    assert figures["producer_img_s"] > 0 and figures["notification_img_s"] > 0 and figures["live_put_img_s"] > 0
    assert 0 < figures["put_to_row_p50_s"] <= figures["put_to_row_p95_s"] <= figures["put_to_row_max_s"] < 60
    for feed in ("producer", "notification", "live_put"):  # per process group (0.1 s resolution: 60 images is small)
        cpu = figures[f"{feed}_cpu_ms_per_image"]
        assert set(cpu) == {"postgres", "kafka", "s3", "workers"} and min(cpu.values()) >= 0 and cpu["workers"] > 0
