"""The three local services the pipeline needs, each started from a state directory.

Kafka (KRaft, broker+controller in one JVM) and s3proxy run from jars that
infra/install.sh fetched from Maven Central; PostgreSQL runs from Debian's package.
Every process is started in its own session and tracked by PID file so that
`down` kills only what this stack started.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PG_USER = "postgres"
PG_DATABASE = "visionscaling"


class StackError(RuntimeError):
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

    @property
    def database_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.pg_port}/{PG_DATABASE}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The settings (env vars) that point the pipeline at this stack."""
        return {
            "DATABASE_URL": self.database_url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "S3_BUCKET": self.s3_bucket,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


# ---------------------------------------------------------------- helpers

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


def _wait(what: str, check, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    tail = ""
    if log and log.exists():
        tail = "\n--- last lines of " + str(log) + " ---\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-30:])
    raise StackError(f"{what} did not become ready within {timeout:.0f}s{tail}")


def _pid_alive(pidfile: Path, marker: str) -> int | None:
    """PID from pidfile if that process is alive and is ours (its cmdline mentions marker)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def _spawn(cmd: list[str], log: Path, pidfile: Path, cwd: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=cwd, start_new_session=True)
    pidfile.write_text(str(proc.pid))
    return proc


def _exited(proc: subprocess.Popen, what: str, log: Path) -> None:
    if proc.poll() is not None:
        raise StackError(f"{what} exited during start-up (code {proc.returncode}):\n"
                         + log.read_text(errors="replace")[-3000:])


def _kill(pidfile: Path, marker: str, timeout: float = 20) -> bool:
    pid = _pid_alive(pidfile, marker)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pidfile, marker):
        time.sleep(0.2)
    if _pid_alive(pidfile, marker):
        os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return True


def _jars(libs: Path) -> str:
    if not libs.is_dir() or not any(libs.glob("*.jar")):
        raise StackError(f"no jars in {libs}: run infra/install.sh first")
    return str(libs / "*")


def _java() -> str:
    java = shutil.which("java")
    if not java:
        raise StackError("java not found: Kafka and s3proxy need Java 17+ (apt-get install openjdk-17-jre-headless)")
    return java


# ---------------------------------------------------------------- PostgreSQL

def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise StackError("PostgreSQL server binaries not found: apt-get install postgresql")
    return versions[-1].parent


def _pg_dir(cfg: StackConfig) -> Path:
    """Where the cluster lives. As root the server runs as `postgres`, which must be able to
    reach the directory: a clone under a private (0700) parent is not, so fall back to /tmp."""
    wanted = cfg.state_dir / "postgres"
    link = cfg.state_dir / "postgres.path"
    if link.exists():
        return Path(link.read_text().strip())
    if os.geteuid() != 0 or _reachable_by(PG_USER, cfg.state_dir):
        path = wanted
    else:
        path = Path(f"/tmp/visionscaling-pg-{os.getpid()}-{int(time.time())}")
    link.write_text(str(path))
    return path


def _reachable_by(user: str, directory: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(directory)],
                          capture_output=True).returncode == 0


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def pg_running(cfg: StackConfig) -> bool:
    data = _pg_dir(cfg) / "data"
    return (data / "postmaster.pid").exists() and subprocess.run(
        _as_pg([str(_pg_bin() / "pg_ctl"), "-D", str(data), "status"]), capture_output=True).returncode == 0


def start_postgres(cfg: StackConfig) -> None:
    pg_bin, base = _pg_bin(), _pg_dir(cfg)
    data, log = base / "data", base / "postgres.log"
    if pg_running(cfg):
        return
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        os.chown(base, pw.pw_uid, grp.getgrnam(PG_USER).gr_gid)
        base.chmod(0o755)
    if not (data / "PG_VERSION").exists():
        subprocess.run(_as_pg([str(pg_bin / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                               "-E", "UTF8", "--locale=C.UTF-8"]), check=True, capture_output=True)
    # fsync off: this cluster is a throwaway for demos and tests, never a user's real database
    opts = (f"-p {cfg.pg_port} -k {base} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    res = subprocess.run(_as_pg([str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                                 "-o", opts, "start"]), capture_output=True, text=True)
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise StackError(f"PostgreSQL failed to start: {res.stderr.strip()}\n{tail}")
    _wait("PostgreSQL", lambda: port_open(cfg.pg_port), 30, log)
    exists = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(cfg.pg_port), "-U", PG_USER, "-tAc",
                             f"SELECT 1 FROM pg_database WHERE datname='{PG_DATABASE}'"],
                            capture_output=True, text=True, check=True).stdout.strip()
    if exists != "1":
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(cfg.pg_port), "-U", PG_USER, "-c",
                        f"CREATE DATABASE {PG_DATABASE}"], check=True, capture_output=True)


def stop_postgres(cfg: StackConfig, mode: str = "fast") -> bool:
    if not pg_running(cfg):
        return False
    subprocess.run(_as_pg([str(_pg_bin() / "pg_ctl"), "-D", str(_pg_dir(cfg) / "data"), "-m", mode, "-w",
                           "stop"]), capture_output=True)
    return True


# ---------------------------------------------------------------- Kafka

def _kafka_dir(cfg: StackConfig) -> Path:
    return cfg.state_dir / "kafka"


def kafka_running(cfg: StackConfig) -> bool:
    return _pid_alive(_kafka_dir(cfg) / "kafka.pid", str(_kafka_dir(cfg))) is not None


def start_kafka(cfg: StackConfig) -> None:
    home = _kafka_dir(cfg)
    if kafka_running(cfg):
        return
    home.mkdir(parents=True, exist_ok=True)
    props, log4j = home / "server.properties", home / "log4j2.properties"
    props.write_text(f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{cfg.kafka_controller_port}
listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port},CONTROLLER://127.0.0.1:{cfg.kafka_controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{cfg.kafka_port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={home / "data"}
num.partitions=3
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
""")
    log4j.write_text(f"""\
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName={home / "server.log"}
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
logger.kafka.name=kafka
logger.kafka.level=WARN
logger.apache.name=org.apache.kafka
logger.apache.level=WARN
""")
    java, cp = _java(), _jars(cfg.libs_dir / "kafka")
    jvm = [java, f"-Xmx{cfg.kafka_heap_mb}m", f"-Xms{cfg.kafka_heap_mb}m", "-server", "-XX:+UseG1GC",
           "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true", f"-Dkafka.logs.dir={home}",
           f"-Dlog4j2.configurationFile={log4j}", "-cp", cp]
    if not (home / "data" / "meta.properties").exists():
        cluster_id = subprocess.run([*jvm, "kafka.tools.StorageTool", "random-uuid"], capture_output=True,
                                    text=True, check=True).stdout.strip().splitlines()[-1]
        res = subprocess.run([*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise StackError(f"kafka storage format failed: {res.stdout}{res.stderr}")
    proc = _spawn([*jvm, "kafka.Kafka", str(props)], home / "stdout.log", home / "kafka.pid", home)
    _wait("Kafka", lambda: _exited(proc, "Kafka", home / "stdout.log") or _kafka_ready(cfg), 90,
          home / "stdout.log")


def _kafka_ready(cfg: StackConfig) -> bool:
    if not port_open(cfg.kafka_port):
        return False
    from confluent_kafka.admin import AdminClient
    try:
        md = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap}).list_topics(timeout=2)
        return bool(md.brokers)
    except Exception:  # noqa: BLE001 - not ready yet is any error here
        return False


def stop_kafka(cfg: StackConfig, hard: bool = False) -> bool:
    home = _kafka_dir(cfg)
    if hard:
        pid = _pid_alive(home / "kafka.pid", str(home))
        if pid:
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
    return _kill(home / "kafka.pid", str(home), timeout=30)


# ---------------------------------------------------------------- S3 (s3proxy)

def _s3_dir(cfg: StackConfig) -> Path:
    return cfg.state_dir / "s3proxy"


def s3_running(cfg: StackConfig) -> bool:
    return _pid_alive(_s3_dir(cfg) / "s3proxy.pid", str(_s3_dir(cfg))) is not None


def start_s3(cfg: StackConfig) -> None:
    home = _s3_dir(cfg)
    if s3_running(cfg):
        return
    (home / "blobs").mkdir(parents=True, exist_ok=True)
    conf = home / "s3proxy.conf"
    conf.write_text(f"""\
s3proxy.endpoint=http://127.0.0.1:{cfg.s3_port}
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity={cfg.s3_access_key}
s3proxy.credential={cfg.s3_secret_key}
jclouds.provider=filesystem
jclouds.filesystem.basedir={home / "blobs"}
""")
    conf.chmod(0o600)
    # Without a configuration logback logs every Jetty event at DEBUG, which cost more CPU
    # per GET than classifying the image (measured ~3.5 ms vs ~1 ms per GET).
    logback = home / "logback.xml"
    logback.write_text("""\
<configuration>
  <appender name="OUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="OUT"/></root>
  <logger name="org.gaul.shaded.org.eclipse.jetty" level="WARN"/>
</configuration>
""")
    cmd = [_java(), "-Xmx256m", f"-Dlogback.configurationFile={logback}",
           "-cp", _jars(cfg.libs_dir / "s3proxy"), "org.gaul.s3proxy.Main",
           "--properties", str(conf)]
    proc = _spawn(cmd, home / "s3proxy.log", home / "s3proxy.pid", home)
    _wait("s3proxy", lambda: _exited(proc, "s3proxy", home / "s3proxy.log") or _s3_ready(cfg), 60,
          home / "s3proxy.log")


def _s3_ready(cfg: StackConfig) -> bool:
    try:
        urllib.request.urlopen(cfg.s3_endpoint, timeout=1)
    except urllib.error.HTTPError:
        return True  # 403 for an unsigned request: the server is answering
    except OSError:
        return False
    return True


def stop_s3(cfg: StackConfig) -> bool:
    return _kill(_s3_dir(cfg) / "s3proxy.pid", str(_s3_dir(cfg)))
