"""Apache Kafka (KRaft) from the jars infra/install.sh fetched from Maven Central: one node
(broker and controller in one JVM) for the demo, or a cluster of N such nodes (every node a
broker and a voter of the controller quorum) for the replication tests
(`python -m infra.stack up --kafka-nodes 3`). Internal topics are replicated min(3, N) times."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from infra.process import (
    StackConfig,
    StackError,
    exited,
    jars,
    java,
    kill,
    pid_alive,
    port_open,
    private_files,
    spawn,
    wait,
)
from settings import Settings

NAME = "kafka"


def nodes(cfg: StackConfig) -> list[int]:
    return list(range(1, cfg.kafka_nodes + 1))


def node_ports(cfg: StackConfig, node: int) -> tuple[int, int]:
    """(broker port, controller port) of a node (1-based)."""
    if node == 1:
        return cfg.kafka_port, cfg.kafka_controller_port
    extra = cfg.kafka_extra_ports[2 * (node - 2) : 2 * (node - 1)]
    if len(extra) != 2:
        raise StackError(f"no ports for Kafka node {node}: the stack was created with fewer nodes")
    return extra[0], extra[1]


def home_dir(cfg: StackConfig, node: int = 1) -> Path:
    return cfg.state_dir / ("kafka" if node == 1 else f"kafka-node{node}")


def node_running(cfg: StackConfig, node: int) -> bool:
    return node_pid(cfg, node) is not None


def running(cfg: StackConfig) -> bool:
    return all(node_running(cfg, n) for n in nodes(cfg))


def _properties(cfg: StackConfig, node: int) -> str:
    port, cport = node_ports(cfg, node)
    voters = ",".join(f"{n}@{cfg.host}:{node_ports(cfg, n)[1]}" for n in nodes(cfg))
    rf, isr = min(3, cfg.kafka_nodes), min(2, cfg.kafka_nodes)
    listeners = (
        ""
        if cfg.secure
        else f"""\
listeners=PLAINTEXT://{cfg.host}:{port},CONTROLLER://{cfg.host}:{cport}
advertised.listeners=PLAINTEXT://{cfg.host}:{port}
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
"""
    )
    return f"""\
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
controller.listener.names=CONTROLLER
{listeners}\
log.dirs={home_dir(cfg, node) / "data"}
num.partitions=3
default.replication.factor={rf}
offsets.topic.replication.factor={rf}
offsets.topic.num.partitions=3
transaction.state.log.replication.factor={rf}
transaction.state.log.min.isr={isr}
share.coordinator.state.topic.replication.factor={rf}
share.coordinator.state.topic.min.isr={isr}
group.initial.rebalance.delay.ms=0
auto.create.topics.enable={"false" if cfg.secure else "true"}
""" + (_secure_properties(cfg) if cfg.secure else "")


def _secure_properties(cfg: StackConfig) -> str:
    """The client listener speaks SASL_SSL: SCRAM-SHA-512 for the principals (their credentials
    kept in the cluster's metadata, added after start by infra/secure.py, never on a command
    line), and PLAIN for `admin` alone, from this 0600 file, which the broker itself uses between
    its listeners (SCRAM cannot authenticate a controller: its credentials live in the metadata
    the controller serves). The controller listener is SASL_SSL too, PLAIN, `admin` alone.
    Nobody but `admin` may do anything an ACL does not allow (infra/secure.py)."""
    from infra import tls

    certs = tls.Certificates(cfg.state_dir / "tls")
    admin = cfg.passwords["admin"]
    port, cport = node_ports(cfg, 1)
    return f"""\
listeners=SASL_SSL://{cfg.host}:{port},CONTROLLER://{cfg.host}:{cport}
advertised.listeners=SASL_SSL://{cfg.host}:{port}
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:SASL_SSL,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
  required username="admin" password="{admin}" user_admin="{admin}";
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \
  required username="admin" password="{admin}" user_admin="{admin}";
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location={certs.kafka_keystore}
ssl.keystore.password={certs.kafka_keystore_password}
ssl.truststore.type=PEM
ssl.truststore.location={certs.ca}
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
"""


def _log4j(home: Path) -> str:
    return f"""\
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
"""


def _jvm(cfg: StackConfig, home: Path) -> list[str]:
    return [
        java(),
        f"-Xmx{cfg.kafka_heap_mb}m",
        f"-Xms{cfg.kafka_heap_mb}m",
        "-server",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={home}",
        f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        "-cp",
        jars(cfg.libs_dir / "kafka"),
    ]


def _cluster_id(cfg: StackConfig) -> str:
    """One id for every node of the cluster, chosen on the first start and kept."""
    path = cfg.state_dir / "kafka-cluster-id"
    if not path.exists():
        home = home_dir(cfg, 1)
        res = subprocess.run(
            [*_jvm(cfg, home), "kafka.tools.StorageTool", "random-uuid"], capture_output=True, text=True, check=True
        )
        path.write_text(res.stdout.strip().splitlines()[-1])
    return path.read_text().strip()


def start_node(cfg: StackConfig, node: int, wait_ready: bool = True) -> subprocess.Popen | None:
    home = home_dir(cfg, node)
    if node_running(cfg, node):
        return None
    home.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    with private_files():  # on the secure stack it holds the admin's password
        props.write_text(_properties(cfg, node))
    props.chmod(0o600)
    (home / "log4j2.properties").write_text(_log4j(home))
    jvm = _jvm(cfg, home)
    if not (home / "data" / "meta.properties").exists():
        res = subprocess.run(
            [*jvm, "kafka.tools.StorageTool", "format", "-t", _cluster_id(cfg), "-c", str(props)],
            capture_output=True,
            text=True,
        )
        if res.returncode != 0:
            raise StackError(f"kafka storage format failed for node {node}: {res.stdout}{res.stderr}")
    proc = spawn([*jvm, "kafka.Kafka", str(props)], home / "stdout.log", home / "kafka.pid", home)
    if wait_ready:
        log = home / "stdout.log"
        wait(f"Kafka node {node}", lambda: exited(proc, f"Kafka node {node}", log) or _ready(cfg), 90, log)
    return proc


def start(cfg: StackConfig) -> None:
    """Every node; a cluster's nodes start together (a quorum needs a majority to elect)."""
    started = {n: start_node(cfg, n, wait_ready=False) for n in nodes(cfg)}
    log = home_dir(cfg, 1) / "stdout.log"

    def ready() -> bool:
        for n, proc in started.items():
            if proc is not None:
                exited(proc, f"Kafka node {n}", home_dir(cfg, n) / "stdout.log")
        return _ready(cfg)

    wait("Kafka", ready, 120, log)


def _ready(cfg: StackConfig) -> bool:
    """Every running node is a registered broker."""
    if not port_open(cfg.kafka_port, cfg.host) and cfg.kafka_nodes == 1:
        return False
    from confluent_kafka.admin import AdminClient

    up = {n for n in nodes(cfg) if node_running(cfg, n)}
    try:
        md = AdminClient(admin_config(cfg)).list_topics(timeout=2)
        return up <= set(md.brokers)
    except Exception:  # noqa: BLE001 - not ready yet is any error here
        return False


def admin_config(cfg: StackConfig) -> dict[str, str]:
    """librdkafka options of the stack's own admin client: on the secure stack the super user,
    by PLAIN over TLS (which works before any SCRAM credential exists)."""
    config = {"bootstrap.servers": cfg.kafka_bootstrap}
    if cfg.secure:
        config |= {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "admin",
            "sasl.password": cfg.passwords["admin"],
            "ssl.ca.location": str(cfg.ca_file),
        }
    return config


def admin_settings(cfg: StackConfig, **values) -> Settings:
    """The project's settings as the stack's admin (for common.kafka_admin's topic creation)."""
    security = (
        {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "PLAIN",
            "kafka_sasl_username": "admin",
            "kafka_sasl_password": cfg.passwords["admin"],
            "kafka_ssl_cafile": cfg.ca_file,
        }
        if cfg.secure
        else {}
    )
    return Settings(_env_file=None, kafka_bootstrap_servers=cfg.kafka_bootstrap, **security, **values)


def stop_node(cfg: StackConfig, node: int, hard: bool = False) -> bool:
    """Stop one node (hard: SIGKILL, as a machine that dies)."""
    home = home_dir(cfg, node)
    if hard:
        pid = pid_alive(home / "kafka.pid", str(home))
        if pid:
            os.killpg(pid, signal.SIGKILL)
            time.sleep(0.5)
    return kill(home / "kafka.pid", str(home), timeout=30)


def stop(cfg: StackConfig, hard: bool = False) -> bool:
    return any([stop_node(cfg, n, hard) for n in reversed(nodes(cfg))])


def node_pid(cfg: StackConfig, node: int) -> int | None:
    return pid_alive(home_dir(cfg, node) / "kafka.pid", str(home_dir(cfg, node)))


def pid(cfg: StackConfig) -> int | None:
    return node_pid(cfg, 1)
