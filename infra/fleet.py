"""Local `faust worker` processes, started, killed and watched: for the end-to-end and
fault-injection tests and the pipeline benchmark."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from common.reach import kafka_config
from db.connection import connect
from infra.services import free_port
from settings import Settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARTIFACTS = Path(os.environ.get("VS_TEST_ARTIFACTS", REPO / "test-artifacts"))


def run(cmd: list[str], env: dict, **kw) -> subprocess.CompletedProcess:
    """Run a command of the project from the repo root; a non-zero exit raises with its output."""
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


# every table a run writes to; a benchmark's repeat empties only the rows (truncate's default)
PIPELINE_TABLES = ("image_info", "prediction_results", "prediction_errors", "image_embeddings")


def truncate(settings: Settings, tables: tuple[str, ...] = ("prediction_results", "prediction_errors")) -> None:
    """Empty `tables` (names from this module, never user input) in one statement."""
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"TRUNCATE {', '.join(tables)}")
    finally:
        conn.close()


def counts(settings: Settings) -> tuple[int, int]:
    """(result rows, error rows) of the current model."""
    conn = connect(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT (SELECT count(*) FROM prediction_results WHERE model = %(m)s),"
                " (SELECT count(*) FROM prediction_errors WHERE model = %(m)s)",
                {"m": settings.model_name},
            )
            return cur.fetchone()
    finally:
        conn.close()


@dataclass
class Fleet:
    """Workers of one consumer group; each keeps its name (HOSTNAME) across restarts."""

    settings: Settings
    env: dict
    tag: str
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)
    starts: int = 0
    command: tuple[str, ...] = (str(BIN / "faust"), "-A", "consumer.app", "worker", "-l", "info")
    # where a worker runs, if not here: (command prefix, address of its metrics), e.g. a host of
    # infra.netns.HostNetwork: (net.run_in(host), host.address)
    placement: dict[str, tuple[list[str], str]] = field(default_factory=dict)

    def start(self, name: str, threads: int = 1) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        log = self.logs.setdefault(name, ARTIFACTS / f"{self.tag}-{name}.log")
        port = self.metrics_ports.setdefault(name, free_port())
        env = {
            **self.env,
            "HOSTNAME": name,
            "TORCH_THREADS": str(threads),
            "DECODE_WORKERS": str(threads),
            "METRICS_PORT": str(port),
        }
        with open(log, "a") as out:  # the worker keeps its own copy of the descriptor
            out.write(f"\n===== start #{self.starts} of {name} at {time.strftime('%H:%M:%S')} =====\n")
            out.flush()
            prefix = self.placement.get(name, ([], ""))[0]
            self.procs[name] = subprocess.Popen(
                [*prefix, *self.command],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def terminate(self, name: str, timeout: float = 120) -> tuple[float, int]:
        """SIGTERM to the worker alone (as Kubernetes sends it to PID 1); waits for its exit.
        Returns (seconds until it exited, exit code)."""
        proc = self.procs[name]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=timeout)
        del self.procs[name]  # stopped on purpose: not a worker that died (start() brings it back)
        return time.monotonic() - started, code

    def samples(self, name: str) -> list:
        """Every sample of a worker's /metrics, scraped once."""
        address = self.placement.get(name, ([], "127.0.0.1"))[1]
        text = urllib.request.urlopen(f"http://{address}:{self.metrics_ports[name]}/metrics", timeout=5).read()
        return [sample for family in text_string_to_metric_families(text.decode()) for sample in family.samples]

    def metric(self, name: str, metric: str, samples: list | None = None, **labels: str) -> float:
        """Sum of a metric's samples whose labels match, from `samples` (Fleet.samples) or
        scraped from a worker's /metrics."""
        return sum(
            sample.value
            for sample in (self.samples(name) if samples is None else samples)
            if sample.name == metric and all(sample.labels.get(k) == v for k, v in labels.items())
        )

    def alive(self) -> dict[str, bool]:
        return {name: p.poll() is None for name, p in self.procs.items()}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def members(self) -> int:
        """Members of the consumer group once it is stable (0 while rebalancing)."""
        group = self.settings.faust_app_id
        admin = AdminClient(kafka_config(self.settings))
        try:
            desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
        except Exception:  # noqa: BLE001 - the group does not exist yet / broker restarting
            return 0
        return len(desc.members) if str(desc.state).endswith("STABLE") else 0

    def wait_for(self, what: str, check, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            if dead:
                raise RuntimeError(f"worker(s) exited {dead} while waiting for {what}\n{self.log_tails()}")
            time.sleep(1)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.log_tails()}")

    def wait_rows(self, n: int, timeout: float) -> None:
        self.wait_for(f"{n} rows", lambda: sum(counts(self.settings)) >= n, timeout)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
            for p in self.logs.values()
            if p.exists()
        )


def fleet_env(settings: Settings, base_env: dict) -> dict:
    """Worker/CLI environment for a run's own topic, bucket, group and weights; short
    session timeouts so that a dead worker's partitions move on within seconds."""
    env = {
        **base_env,
        "KAFKA_TOPIC": settings.kafka_topic,
        "S3_BUCKET": settings.s3_bucket,
        "FAUST_APP_ID": settings.faust_app_id,
        "KAFKA_DEAD_LETTER_TOPIC": settings.kafka_dead_letter_topic,
        "BROKER_SESSION_TIMEOUT_S": "6",
        "BROKER_HEARTBEAT_INTERVAL_S": "1",
        "RETRY_BACKOFF_MAX_S": "4",
    }
    if settings.model_weights is not None:
        env["MODEL_WEIGHTS"] = str(settings.model_weights)
    return env
