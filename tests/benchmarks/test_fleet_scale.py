"""benchmarks/fleet_scale.py: workers with the model replaced by a fixed answer (its own Faust
app, benchmarks/fixed_answer_app.py) write every key's row through the real services, and the
benchmark reports what each service spent per row (the figures come from the full run)."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fleet_scale import capacity
from benchmarks.local_stack import worker_counts

REPO = Path(__file__).resolve().parents[2]


def test_capacity_is_set_by_the_highest_cpu_per_row_measured():
    sizes = [
        {"cpu_ms_per_row": {"postgres": 0.2, "s3": 0.5, "kafka": 0.1}},
        {"cpu_ms_per_row": {"postgres": 0.25, "s3": 0.4, "kafka": 0.0}},
    ]
    out = capacity(sizes, cores=2, machine_img_s=100.0)
    assert out["postgres"] == {"cpu_ms_per_row": 0.25, "rows_s_per_core": 4000, "machines_per_2_core_server": 80}
    assert out["s3"]["machines_per_2_core_server"] == 40
    assert out["kafka"]["cpu_ms_per_row"] == 0.1


def test_fleet_sizes_are_parsed_or_refused_in_one_line():
    assert worker_counts("4,8,16,24") == [4, 8, 16, 24]
    for bad in ("4,x", "0,2", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            worker_counts(bad)


def test_a_small_fleet_writes_every_keys_row_and_reports_what_it_cost(stack_libs, shared_dir, tmp_path):
    env = {**os.environ, "VS_LIBS_DIR": str(stack_libs), "SHARED_DIR": str(shared_dir)}
    cmd = [sys.executable, "-m", "benchmarks.fleet_scale", "--workers", "1,3", "--partitions", "6"]
    cmd += ["--images", "400", "--ms-per-image", "5", "--machine-img-s", "100", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads((tmp_path / "fleet_scale.json").read_text())
    assert json.loads(proc.stdout) == figures
    assert [s["workers"] for s in figures["sizes"]] == [1, 3]
    for size in figures["sizes"]:
        # a fixed answer of 5 ms per image bounds each worker at 200 rows/s
        assert 0 < size["rows_s"] <= size["ideal_rows_s"] * 1.05
        assert size["write"]["batches"] >= 400 / 32 and size["write"]["mean_ms"] > 0
        assert size["cpu_ms_per_row"]["workers"] > 0 and 0 < size["machine_busy"] <= 1
        assert size["error_rows"] == 0
        assert all(n >= 0 for n in size["postgres_active_backends"].values())
    assert set(figures["capacity"]) == {"postgres", "s3", "kafka"}
    assert (tmp_path / "fleet_scale.png").stat().st_size > 10_000
