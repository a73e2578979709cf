"""benchmarks/scale_events.py: workers added and removed under a steady stream; every message
sent is written, and each event's pause and redeliveries are reported (the figures come from
the full run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.scale_events import analyse, longest_gap

REPO = Path(__file__).resolve().parents[2]


def test_the_longest_gap_counts_from_the_last_write_before_the_event():
    assert longest_gap([1.0, 2.0, 5.5, 6.0], start=3.0, end=7.0) == 3.5
    assert longest_gap([1.0, 2.0], start=3.0, end=7.0) == 5.0  # nothing written since
    assert longest_gap([3.5, 4.0], start=3.0, end=10.0) == 6.0  # nothing written after 4.0


def test_a_message_written_again_counts_in_the_span_of_its_second_write():
    rows = [(1.0, 0, 1, 0.9), (2.0, 0, 2, 1.9), (11.0, 0, 1, 0.9), (12.0, 0, 3, 9.0)]
    rows += [(21.0, 0, 1, 0.9), (22.0, 0, 2, 1.9)]
    events = [{"from": 1, "to": 2, "time": 10.0, "stable_s": 1.0}, {"from": 2, "to": 1, "time": 20.0, "stable_s": 1.0}]
    steady, per_event = analyse(rows, events, end=30.0)
    assert steady["written_again"] == 0 and steady["max_delay_s"] == 0.1
    assert [(e["written_again"], e["written_more_than_twice"]) for e in per_event] == [(1, 0), (1, 1)]
    assert per_event[0]["no_row_s"] == 9.0  # from the write at 2.0 to the one at 11.0
    assert per_event[0]["max_delay_s"] == 3.0  # key 3, sent at 9.0, written at 12.0 (a rewrite is not a delay)


def test_every_message_is_written_while_workers_come_and_go(stack_libs, shared_dir, tmp_path):
    env = {**os.environ, "VS_LIBS_DIR": str(stack_libs), "SHARED_DIR": str(shared_dir)}
    cmd = [sys.executable, "-m", "benchmarks.scale_events", "--sizes", "1,3,1", "--partitions", "6"]
    cmd += ["--rate", "40", "--interval", "15", "--ms-per-image", "5", "--out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads((tmp_path / "scale_events.json").read_text())
    assert json.loads(proc.stdout) == figures
    assert figures["stream_s"] >= 45 and figures["messages_sent"] >= 40 * 40  # 40 keys/s while it ran
    assert figures["messages_written"] == figures["messages_sent"]  # nothing lost
    assert [(e["from"], e["to"]) for e in figures["events"]] == [(1, 3), (3, 1)]
    for event in figures["events"]:
        assert event["stable_s"] > 0 and event["no_row_s"] > 0 and event["written_again"] >= 0
        assert 0 < event["max_delay_s"] < 60
    assert (tmp_path / "scale_events.png").stat().st_size > 10_000
