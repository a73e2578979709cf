"""Apache Kafka (KRaft, broker and controller in one JVM) from the jars infra/install.sh
fetched from Maven Central."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from infra.process import StackConfig, StackError, exited, jars, java, kill, pid_alive, port_open, spawn, wait

NAME = "kafka"


def home_dir(cfg: StackConfig) -> Path:
    return cfg.state_dir / "kafka"


def running(cfg: StackConfig) -> bool:
    return pid_alive(home_dir(cfg) / "kafka.pid", str(home_dir(cfg))) is not None


def start(cfg: StackConfig) -> None:
    home = home_dir(cfg)
    if running(cfg):
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
    java_bin, cp = java(), jars(cfg.libs_dir / "kafka")
    jvm = [
        java_bin,
        f"-Xmx{cfg.kafka_heap_mb}m",
        f"-Xms{cfg.kafka_heap_mb}m",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={home}",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        cp,
    ]
    if not (home / "data" / "meta.properties").exists():
        cluster_id = (
            subprocess.run([*jvm, "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        res = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise StackError(f"kafka storage format failed: {res.stdout}{res.stderr}")
    proc = spawn([*jvm, "kafka.Kafka", str(props)], home / "stdout.log", home / "kafka.pid", home)
    wait("Kafka", lambda: exited(proc, "Kafka", home / "stdout.log") or _kafka_ready(cfg), 90, home / "stdout.log")


def _kafka_ready(cfg: StackConfig) -> bool:
    if not port_open(cfg.kafka_port):
        return False
    from confluent_kafka.admin import AdminClient

    try:
        md = AdminClient({"bootstrap.servers": cfg.kafka_bootstrap}).list_topics(timeout=2)
        return bool(md.brokers)
    except Exception:  # noqa: BLE001 - not ready yet is any error here
        return False


def stop(cfg: StackConfig, hard: bool = False) -> bool:
    home = home_dir(cfg)
    if hard:
        pid = pid_alive(home / "kafka.pid", str(home))
        if pid:
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
    return kill(home / "kafka.pid", str(home), timeout=30)


def pid(cfg: StackConfig) -> int | None:
    return pid_alive(home_dir(cfg) / "kafka.pid", str(home_dir(cfg)))
