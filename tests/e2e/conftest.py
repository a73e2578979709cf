"""The one fleet fixture of the end-to-end tests: `e2e` starts worker fleets, producers and
other processes for a test and stops every one of them after it, however the test ends."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from infra.fleet import ARTIFACTS, REPO, Fleet


class E2ERun:
    def __init__(self) -> None:
        self.fleets: list[Fleet] = []
        self.procs: list[subprocess.Popen] = []

    def fleet(self, settings, env: dict, tag: str, workers: int = 0, placement: dict | None = None) -> Fleet:
        """A consumer group's fleet; with `workers`, worker-1..N started and in the group
        (`placement`: where each runs, see Fleet.placement; default here)."""
        fleet = Fleet(settings, env, f"{tag}-{uuid.uuid4().hex[:6]}", placement=placement or {})
        self.fleets.append(fleet)
        for i in range(workers):
            fleet.start(f"worker-{i + 1}")
        if workers:
            fleet.wait_for(f"{workers} workers in the consumer group", lambda: fleet.members() == workers, 180)
        return fleet

    def stream(
        self,
        settings,
        env: dict,
        tag: str,
        keys: list[str],
        seconds: float,
        workers: int = 2,
        placement: dict | None = None,
    ) -> tuple[Fleet, subprocess.Popen]:
        """`workers` workers in the group, then a producer sending `keys` paced over `seconds`
        (`--rate`), so that faults land mid-stream however fast the machine classifies."""
        fleet = self.fleet(settings, env, tag, workers, placement)
        return fleet, self.producer(env, keys, fleet.tag, rate=len(keys) / seconds)

    def producer(self, env: dict, keys: list[str], tag: str, rate: float | None = None) -> subprocess.Popen:
        """`python -m producer --stdin` sending `keys` (paced at `rate` keys/s when given). From
        stdin, the producer needs no PostgreSQL, so a database outage tests the workers alone."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        key_file = ARTIFACTS / f"{tag}-{uuid.uuid4().hex[:4]}-keys.txt"
        key_file.write_text("".join(k + "\n" for k in keys))
        with open(key_file) as stdin:  # the producer keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "producer", "--stdin", *(["--rate", f"{rate:.1f}"] if rate else [])],
                env=env,
                cwd=REPO,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        return self.adopt(proc)

    def adopt(self, proc: subprocess.Popen) -> subprocess.Popen:
        """Stop `proc` (a viewer, a producer) with the rest after the test."""
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        """Stop everything (also called by a test before its final checks: idempotent)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        for fleet in self.fleets:
            fleet.stop()


@pytest.fixture
def e2e():
    run = E2ERun()
    yield run
    run.stop()
