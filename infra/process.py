"""What every local service shares: free ports, waiting for readiness, processes started
in their own session and tracked by PID file (so that `down` stops only what this stack
started), and the stack's configuration."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import VisionScalingError

PG_USER = "postgres"
PG_DATABASE = "visionscaling"


class StackError(VisionScalingError, RuntimeError):
    """A service could not be installed, started or reached."""


@dataclass
class StackConfig:
    state_dir: Path
    libs_dir: Path
    kafka_port: int
    kafka_controller_port: int
    pg_port: int
    s3_port: int
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str = "images"
    kafka_heap_mb: int = 512
    kafka_nodes: int = 1
    kafka_extra_ports: list[int] = field(default_factory=list)  # (broker, controller) of nodes 2..N
    # where every service listens and is reached: loopback, or the gateway of the worker hosts'
    # network (infra/netns.py) so that processes in other network namespaces reach them too
    host: str = "127.0.0.1"
    # the Kafka topic versitygw publishes the bucket's events to; "" for none
    s3_events_topic: str = ""
    # `up --secure`: TLS everywhere, SASL/SCRAM and ACLs on Kafka, passwords on PostgreSQL
    # (infra/secure.py); the generated passwords by name (Kafka principals and "postgres")
    secure: bool = False
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def ca_file(self) -> Path:
        """The secure stack's CA certificate (infra/tls.py), which every client verifies against."""
        return self.state_dir / "tls" / "ca.crt"

    @property
    def database_url(self) -> str:
        if not self.secure:
            return f"postgresql://{PG_USER}@{self.host}:{self.pg_port}/{PG_DATABASE}"
        return self.database_url_as(PG_USER, self.passwords[PG_USER])

    def database_url_as(self, user: str, password: str) -> str:
        """A login's URL on the secure stack: TLS, the server's name checked against the CA."""
        from urllib.parse import quote

        return (
            f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.pg_port}/{PG_DATABASE}"
            f"?sslmode=verify-full&sslrootcert={quote(str(self.ca_file))}"
        )

    @property
    def kafka_bootstrap(self) -> str:
        brokers = [self.kafka_port, *self.kafka_extra_ports[0::2]][: self.kafka_nodes]
        return ",".join(f"{self.host}:{port}" for port in brokers)

    @property
    def s3_endpoint(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.host}:{self.s3_port}"

    def env(self, kafka_user: str = "admin") -> dict[str, str]:
        """The settings (env vars) that point the pipeline at this stack; on the secure stack,
        as the Kafka principal `kafka_user` (admin, producer, worker or monitor)."""
        env = {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "S3_BUCKET": self.s3_bucket,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        if self.secure:
            if kafka_user not in self.passwords:
                raise StackError(f"no Kafka principal {kafka_user!r} on this stack")
            env |= {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": kafka_user,
                "KAFKA_SASL_PASSWORD": self.passwords[kafka_user],
                "KAFKA_SSL_CAFILE": str(self.ca_file),
                "S3_CA_BUNDLE": str(self.ca_file),
            }
        return env


# ---------------------------------------------------------------- helpers


@contextmanager
def private_files() -> Iterator[None]:
    """Files created inside are the owner's alone from their first byte (umask 077), not
    world-readable until a chmod: the stack's passwords, keys and settings."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait(what: str, check, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tail = ""
    if log and log.exists():
        tail = (
            "\n--- last lines of " + str(log) + " ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        )
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def pid_alive(pidfile: Path, marker: str) -> int | None:
    """PID from pidfile if that process is alive and is ours (its cmdline mentions marker)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def spawn(cmd: list[str], log: Path, pidfile: Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            env=env,
        )
    pidfile.write_text(str(proc.pid))
    return proc


def exited(proc: subprocess.Popen, what: str, log: Path) -> None:
    if proc.poll() is not None:
        raise StackError(
            f"{what} exited during start-up (code {proc.returncode}):\n" + log.read_text(errors="replace")[-3000:]
        )


def kill(pidfile: Path, marker: str, timeout: float = 20) -> bool:
    pid = pid_alive(pidfile, marker)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pidfile, marker):
        time.sleep(0.2)
    if pid_alive(pidfile, marker):
        os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return True


def jars(libs: Path) -> str:
    if not libs.is_dir() or not any(libs.glob("*.jar")):
        raise StackError(f"no jars in {libs}: run infra/install.sh first")
    return str(libs / "*")


def java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("java not found: Kafka needs Java 17+ (apt-get install openjdk-17-jre-headless)")
    return java
