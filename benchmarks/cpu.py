"""CPU seconds used by the processes of a pipeline run (Linux /proc), so the benchmark can
say where the machine's time went: workers, S3 server, Kafka, PostgreSQL."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from infra.services import SERVICES, StackConfig

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float]:
    """(parent pid, user+system CPU seconds, those of its children that exited and it reaped) of
    a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, (int(fields[13]) + int(fields[14])) / _TICK


def own_seconds(pid: int) -> float:
    """CPU seconds of one process, its children not included."""
    return _stat(pid)[1]


def tree_seconds(root: int) -> float:
    """CPU seconds of `root` and its descendants (PostgreSQL's backends, Spark's Python workers):
    the live ones', and those of the ones that exited and were reaped within the tree (a
    process's children's time, which the kernel adds to the parent's when it reaps them), so
    that a child ending during a measurement does not take its CPU out of the total."""
    parents, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent, own, reaped = _stat(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # exited while we looked
            parents[int(entry.name)], cpu[int(entry.name)] = parent, own + reaped
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, steal, total) clock ticks of all the machine's cores since boot (/proc/stat):
    user, nice, system, idle, iowait, irq, softirq, steal (guest time is inside user)."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return f[0] + f[1] + f[2] + f[5] + f[6], f[7], sum(f)


def busy_fraction(before: tuple[int, int, int], after: tuple[int, int, int]) -> tuple[float, float]:
    """(busy, stolen by the hypervisor) shares of the machine's CPU time between two
    machine_jiffies()."""
    total = after[2] - before[2]
    if not total:
        return 0.0, 0.0
    return (after[0] - before[0]) / total, (after[1] - before[1]) / total


def service_pids(cfg: StackConfig) -> dict[str, int]:
    pids = {name: service.pid(cfg) for name, service in SERVICES.items()}
    return {name: pid for name, pid in pids.items() if pid}


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: tree_seconds(pid) for name, pid in pids.items()}


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 3) for name in after}


def with_workers(services: dict[str, int], procs: dict) -> dict[str, int]:
    """The services' pids and a fleet's worker processes (name -> Popen) as "worker:NAME"."""
    return {**services, **{f"worker:{name}": proc.pid for name, proc in procs.items()}}


def grouped(used: dict[str, float]) -> dict[str, float]:
    """CPU seconds per service, and the "worker:NAME" entries summed as "workers"."""
    out = {k: v for k, v in used.items() if not k.startswith("worker:")}
    out["workers"] = round(sum(v for k, v in used.items() if k.startswith("worker:")), 3)
    return out


def model_name() -> str:
    """The processor's model name (what `lscpu` calls it), else platform's answer: the machine a
    figure was measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
