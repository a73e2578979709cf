"""versitygw (Versity's S3 gateway, Apache-2.0) over a directory: the stack's S3 server, and
the one that publishes bucket notifications to Kafka by itself (`--event-kafka-*`), so a
photo put into the bucket reaches the workers with no producer to run.

Built by infra/install.sh from the Go module proxy into .stack/bin. Facts it depends on:
- it exits at start when its event topic does not exist, so the topic is created first;
- it sends an `s3:TestEvent` at start, and `{"Records": [...]}` per PUT, copy, multipart
  completion and DELETE, the object key raw (consumer/notifications.py);
- events are sent from memory, each retried briefly: a Kafka restart loses those in flight
  (measured: all of them, tests/e2e/test_live_s3.py) and so does a gateway stop (docs: "Live
  from S3"; `python -m producer --from-bucket --only-missing` recovers them);
- object metadata (ETag, content type) lives in extended attributes of the data directory's
  files: the filesystem must support user xattrs (ext4, xfs, btrfs, tmpfs since Linux 6.6).
"""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from infra.process import StackConfig, StackError, exited, kill, pid_alive, spawn, wait

NAME = "s3"


@dataclass(frozen=True)
class Gateway:
    """One gateway process: where it keeps its data and log, its port, and the Kafka topic it
    publishes events to ("" for none). The stack runs one; a test may run another on the same
    stack (its own topic, or a gateway to kill)."""

    home: Path
    port: int
    events_topic: str = ""

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def pidfile(self) -> Path:
        return self.home / "versitygw.pid"

    @property
    def log(self) -> Path:
        return self.home / "versitygw.log"


def binary(cfg: StackConfig) -> Path:
    path = cfg.libs_dir.parent / "bin" / "versitygw"
    if not os.access(path, os.X_OK):
        raise StackError(f"versitygw not found at {path}: run infra/install.sh first")
    return path


def stack_gateway(cfg: StackConfig) -> Gateway:
    return Gateway(cfg.state_dir / "versitygw", cfg.s3_port, cfg.s3_events_topic)


def start_gateway(cfg: StackConfig, gw: Gateway) -> None:
    if gateway_pid(gw) is not None:
        return
    gw.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(binary(cfg)), "--port", f"{cfg.host}:{gw.port}", "--keep-alive", "--quiet"]
    if cfg.secure:  # HTTPS only; versitygw 1.8 cannot authenticate to Kafka, so no events
        from infra import tls

        certs = tls.Certificates(cfg.state_dir / "tls")
        cmd += ["--cert", str(certs.cert("s3")), "--key", str(certs.key("s3"))]
    elif gw.events_topic:
        _ensure_topic(cfg, gw.events_topic)
        broker = cfg.kafka_bootstrap.split(",")[0]
        cmd += ["--event-kafka-url", broker, "--event-kafka-topic", gw.events_topic]
    cmd += ["posix", str(gw.data_dir)]
    # the root credentials by environment, never on a command line others can read in ps
    env = {**os.environ, "ROOT_ACCESS_KEY": cfg.s3_access_key, "ROOT_SECRET_KEY": cfg.s3_secret_key}
    gw.home.mkdir(parents=True, exist_ok=True)
    proc = spawn(cmd, gw.log, gw.pidfile, gw.home, env=env)
    wait("versitygw", lambda: exited(proc, "versitygw", gw.log) or _answers(cfg, gw.port), 60, gw.log)


def _ensure_topic(cfg: StackConfig, topic: str) -> None:
    from common.kafka_admin import ensure_topic
    from infra.kafka import admin_settings

    ensure_topic(admin_settings(cfg), name=topic)


def _answers(cfg: StackConfig, port: int) -> bool:
    import ssl

    context = ssl.create_default_context(cafile=str(cfg.ca_file)) if cfg.secure else None
    scheme = "https" if cfg.secure else "http"
    try:
        urllib.request.urlopen(f"{scheme}://{cfg.host}:{port}/", timeout=1, context=context)
    except urllib.error.HTTPError:
        return True  # 403 for an unsigned request: the server is answering
    except OSError:
        return False
    return True


def stop_gateway(gw: Gateway, hard: bool = False) -> bool:
    """SIGTERM (the gateway then waits, without bound, for its pending events; SIGKILL after
    20 s), or with `hard` SIGKILL at once: a crash, losing the events it holds."""
    if hard and (pid := gateway_pid(gw)) is not None:
        os.killpg(pid, signal.SIGKILL)
    return kill(gw.pidfile, str(gw.home))


def gateway_pid(gw: Gateway) -> int | None:
    return pid_alive(gw.pidfile, str(gw.home))


# the service interface of infra/services.py


def start(cfg: StackConfig) -> None:
    start_gateway(cfg, stack_gateway(cfg))


def stop(cfg: StackConfig) -> bool:
    return stop_gateway(stack_gateway(cfg))


def running(cfg: StackConfig) -> bool:
    return pid(cfg) is not None


def pid(cfg: StackConfig) -> int | None:
    return gateway_pid(stack_gateway(cfg))
