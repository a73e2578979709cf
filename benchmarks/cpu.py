"""CPU seconds used by the processes of a pipeline run (Linux /proc), so the benchmark can
say where the machine's time went: workers, S3 server, Kafka, PostgreSQL."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from infra.services import SERVICES, StackConfig

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float]:
    """(parent pid, user+system CPU seconds) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def tree_seconds(root: int) -> float:
    """CPU seconds of `root` and every live descendant (PostgreSQL's backends, say)."""
    parents, cpu = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)], cpu[int(entry.name)] = _stat(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # exited while we looked
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def service_pids(cfg: StackConfig) -> dict[str, int]:
    pids = {name: service.pid(cfg) for name, service in SERVICES.items()}
    return {name: pid for name, pid in pids.items() if pid}


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: tree_seconds(pid) for name, pid in pids.items()}


def used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 1) for name in after}


def with_workers(services: dict[str, int], procs: dict) -> dict[str, int]:
    """The services' pids and a fleet's worker processes (name -> Popen) as "worker:NAME"."""
    return {**services, **{f"worker:{name}": proc.pid for name, proc in procs.items()}}


def grouped(used: dict[str, float]) -> dict[str, float]:
    """CPU seconds per service, and the "worker:NAME" entries summed as "workers"."""
    out = {k: v for k, v in used.items() if not k.startswith("worker:")}
    out["workers"] = round(sum(v for k, v in used.items() if k.startswith("worker:")), 1)
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
