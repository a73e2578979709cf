"""benchmarks/spark_peer.py: the Spark Structured Streaming peer runs on a stack of its own,
small, and writes the same rows as the pipeline for the same keys (the figures themselves come
from the full run, not from here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.spark_peer import agreement

REPO = Path(__file__).resolve().parents[2]


def test_agreement_counts_a_row_the_same_only_with_the_same_category_class_and_confidence():
    pipeline = {"a": ("cat", 1, 0.5), "b": ("dog", 2, 0.25), "c": ("fox", 3, 0.75), "d": ("owl", 4, 0.1)}
    spark = {"a": ("cat", 1, 0.50001), "b": ("cow", 2, 0.25), "c": ("fox", 3, 0.76), "e": ("owl", 4, 0.1)}
    assert agreement(pipeline, spark) == {"keys": 4, "other_keys": 4, "same_rows": 1}


def test_spark_reads_the_topic_and_writes_the_pipelines_rows(stack_libs, shared_dir, tmp_path):
    env = {**os.environ, "VS_LIBS_DIR": str(stack_libs), "SHARED_DIR": str(shared_dir)}
    cmd = [sys.executable, "-m", "benchmarks.spark_peer", "--images", "80", "--repeats", "1"]
    cmd += ["--warmup-images", "0", "--latency-images", "20", "--without-ray", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads((tmp_path / "spark_peer.json").read_text())
    assert json.loads(proc.stdout) == figures
    assert figures["rows_agree"] == {"keys": 80, "other_keys": 80, "same_rows": 80}
    for system in ("pipeline", "spark"):
        run = figures[system]["runs"][0]
        assert run["img_s"] > 0 and run["cpu_ms_per_image"] > 0
        assert set(run["services_cpu_ms_per_image"]) == {"postgres", "kafka", "s3"}
        lat = figures[system]["latency_at_half_rate"]
        assert 0 < lat["p50_s"] <= lat["p95_s"] < 120
    assert set(figures["spark"]["runs"][0]["cpu_ms_per_image_by_part"]) == {"jvm", "python_workers", "driver"}
    assert "ray_data" not in figures
    assert (tmp_path / "spark_peer.png").stat().st_size > 10_000
