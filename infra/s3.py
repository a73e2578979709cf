"""The stack's S3 server: versitygw (infra/versitygw.py, the default), or s3proxy (filesystem
backend, from the jars infra/install.sh fetched from Maven Central) when the stack was created
with VS_S3_SERVER=s3proxy, kept to compare the two (benchmarks)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from infra import versitygw
from infra.process import StackConfig, exited, jars, java, kill, pid_alive, spawn, wait

NAME = "s3"


def home_dir(cfg: StackConfig) -> Path:
    return cfg.state_dir / "s3proxy"


def running(cfg: StackConfig) -> bool:
    if cfg.s3_server == "versitygw":
        return versitygw.running(cfg)
    return pid_alive(home_dir(cfg) / "s3proxy.pid", str(home_dir(cfg))) is not None


def start(cfg: StackConfig) -> None:
    if cfg.s3_server == "versitygw":
        return versitygw.start(cfg)
    home = home_dir(cfg)
    if running(cfg):
        return
    (home / "blobs").mkdir(parents=True, exist_ok=True)
    conf = home / "s3proxy.conf"
    conf.write_text(f"""\
s3proxy.endpoint=http://{cfg.host}:{cfg.s3_port}
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
    cmd = [
        java(),
        "-Xmx256m",
        f"-Dlogback.configurationFile={logback}",
        "-cp",
        jars(cfg.libs_dir / "s3proxy"),
        "org.gaul.s3proxy.Main",
        "--properties",
        str(conf),
    ]
    proc = spawn(cmd, home / "s3proxy.log", home / "s3proxy.pid", home)
    wait("s3proxy", lambda: exited(proc, "s3proxy", home / "s3proxy.log") or _s3_ready(cfg), 60, home / "s3proxy.log")


def _s3_ready(cfg: StackConfig) -> bool:
    try:
        urllib.request.urlopen(cfg.s3_endpoint, timeout=1)
    except urllib.error.HTTPError:
        return True  # 403 for an unsigned request: the server is answering
    except OSError:
        return False
    return True


def stop(cfg: StackConfig) -> bool:
    if cfg.s3_server == "versitygw":
        return versitygw.stop(cfg)
    return kill(home_dir(cfg) / "s3proxy.pid", str(home_dir(cfg)))


def pid(cfg: StackConfig) -> int | None:
    if cfg.s3_server == "versitygw":
        return versitygw.pid(cfg)
    return pid_alive(home_dir(cfg) / "s3proxy.pid", str(home_dir(cfg)))
