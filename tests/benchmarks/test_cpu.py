"""benchmarks/cpu.py counts the CPU of a process and its children, live or reaped (no services)."""

import os
import subprocess
import sys
import time

from benchmarks import cpu


def test_a_busy_child_counts_towards_its_parent():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 1.5: pass\ntime.sleep(30)"]
    )
    try:
        before = cpu.snapshot({"child": child.pid})
        time.sleep(2.0)  # the child spins for 1.5 s of it
        own = cpu.used(before, cpu.snapshot({"child": child.pid}))["child"]
        tree = cpu.tree_seconds(os.getpid())
        assert 0.8 <= own <= 2.0, own
        assert tree >= cpu.tree_seconds(child.pid) >= 0.8
    finally:
        child.kill()
        child.wait()


def test_a_child_that_exits_keeps_its_cpu_in_the_tree():
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "spin = 'import time\\nt = time.time()\\nwhile time.time() - t < 1.0: pass'\n"
            "subprocess.run([sys.executable, '-c', spin])\n"
            "time.sleep(30)",
        ]
    )
    try:
        before = cpu.snapshot({"parent": parent.pid})
        time.sleep(2.5)  # the grandchild spins 1 s, exits, and is reaped by the parent
        used = cpu.used(before, cpu.snapshot({"parent": parent.pid}))["parent"]
        assert used >= 0.7, used
    finally:
        parent.kill()
        parent.wait()


def test_the_machine_is_busier_while_a_process_spins():
    before = cpu.machine_jiffies()
    t = time.time()
    while time.time() - t < 0.5:
        pass
    busy, stolen = cpu.busy_fraction(before, cpu.machine_jiffies())
    assert 0.3 <= busy <= 1.0 and 0.0 <= stolen <= 1.0


def test_workers_are_summed_and_services_kept_apart():
    class Proc:
        def __init__(self, pid):
            self.pid = pid

    assert cpu.with_workers({"s3": 1}, {"w-1": Proc(2), "w-2": Proc(3)}) == {"s3": 1, "worker:w-1": 2, "worker:w-2": 3}
    assert cpu.grouped({"s3": 0.3, "worker:w-1": 1.2, "worker:w-2": 0.7}) == {"s3": 0.3, "workers": 1.9}
