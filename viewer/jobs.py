"""Trainings an admin starts from the browser, run outside the web request: `python -m training
fit --from-labels NAME` in a child process (the viewer never imports torch), watched by a
thread that beats the job's heartbeat with its last line of output, and records its end: the
version it registered, or the line that says why it failed. One job per name at a time (the
database says so, across viewers); a job whose viewer stopped beating is shown as lost.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import psycopg2

from common.errors import VisionScalingError
from db import training_jobs as store

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
HEARTBEAT_S = 5.0
STALE_S = 30.0  # a running job not heard of for this long is lost
REGISTERED = re.compile(r"^registered (\S+)@(\d+) ")


class JobNotStarted(VisionScalingError, RuntimeError):
    """The training process could not be started (no Python, no memory, too many processes)."""


def fit_command(name: str) -> list[str]:
    return [sys.executable, "-m", "training", "fit", "--from-labels", name]


class TrainingJobs:
    def __init__(self, connection: Callable, command: Callable[[str], list[str]] = fit_command):
        self._connection, self._command = connection, command

    def start(self, name: str, who: str) -> int:
        """A job id; AlreadyRunning when NAME has one."""
        with self._connection() as conn:
            store.mark_lost(conn, STALE_S)
            job = store.start(conn, name, who)
        try:
            proc = subprocess.Popen(
                self._command(name),
                cwd=REPO,
                env=os.environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,  # universal newlines: a progress bar's \r ends a line too
                errors="replace",
            )
        except OSError as exc:
            self._write(store.finish, job, "failed", f"could not start the training: {exc}", None)
            raise JobNotStarted(f"could not start the training: {exc.strerror or exc}") from None
        threading.Thread(target=self._watch, args=(job, proc), name=f"training-{name}", daemon=True).start()
        return job

    def recent(self, name: Optional[str] = None) -> list[dict]:
        with self._connection() as conn:
            return store.recent(conn, STALE_S, name)

    def _watch(self, job: int, proc: subprocess.Popen) -> None:
        lines: collections.deque[str] = collections.deque(maxlen=50)
        found: dict = {}

        def read() -> None:
            for raw in proc.stdout:
                line = raw.strip()
                if line:
                    lines.append(line[:300])
                    m = REGISTERED.match(line)
                    if m:
                        found["version"] = int(m.group(2))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while True:
            try:
                proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                self._write(store.beat, job, lines[-1] if lines else None)
        reader.join(timeout=10)
        version = found.get("version")
        if proc.returncode == 0 and version is not None:
            self._write(store.finish, job, "succeeded", lines[-1] if lines else "done", version)
            return
        reason = next((line for line in reversed(lines) if line.startswith("error:")), None)
        reason = reason or (lines[-1] if lines else f"exit status {proc.returncode}")
        self._write(store.finish, job, "failed", reason, None)

    def _write(self, fn: Callable, *args) -> None:
        try:
            with self._connection() as conn:
                fn(conn, *args)
        except psycopg2.Error as exc:  # the database is down: the next beat (or another viewer) catches up
            log.warning("training job %s: could not record progress: %s", args[0], str(exc).strip())
