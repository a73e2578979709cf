"""benchmarks/local_stack.py: a benchmark's own stack goes away with the benchmark, also when
the benchmark is stopped with SIGTERM (whose default action would skip the clean-up)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import time
from benchmarks import cpu
from benchmarks.local_stack import temporary_stack
from infra import postgres
with temporary_stack("vs-test-sigterm-") as cfg:
    print(cfg.state_dir, postgres.data_dir(cfg), flush=True)
    print(*cpu.service_pids(cfg).values(), flush=True)
    time.sleep(600)
"""


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_sigterm_stops_and_removes_the_benchmark_stack(stack_libs):
    env = {**os.environ, "VS_LIBS_DIR": str(stack_libs)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        dirs = [Path(p) for p in proc.stdout.readline().split()]
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(dirs) == 2 and all(d.is_dir() for d in dirs), dirs
        assert len(pids) == 3 and not any(gone(p) for p in pids), pids  # Kafka, PostgreSQL, versitygw
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(120) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(gone(p) for p in pids):
            time.sleep(0.5)
        assert all(gone(p) for p in pids), [p for p in pids if not gone(p)]
        assert not any(d.exists() for d in dirs), dirs
    finally:
        if proc.poll() is None:
            proc.terminate()  # with the clean-up under test, the stack goes too
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
