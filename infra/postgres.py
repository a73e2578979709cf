"""PostgreSQL from Debian's package: a throwaway cluster in the stack's state directory,
run as the `postgres` user when we are root (the server refuses to run as root)."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from infra.process import PG_DATABASE, PG_USER, StackConfig, StackError, port_open, private_files, wait

NAME = "postgres"


def _pg_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not versions:
        raise StackError("PostgreSQL server binaries not found: apt-get install postgresql")
    return versions[-1].parent


def data_dir(cfg: StackConfig) -> Path:
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
    return (
        subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(directory)], capture_output=True).returncode == 0
    )


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else cmd


def running(cfg: StackConfig) -> bool:
    data = data_dir(cfg) / "data"
    return (data / "postmaster.pid").exists() and subprocess.run(
        _as_pg([str(_pg_bin() / "pg_ctl"), "-D", str(data), "status"]), capture_output=True
    ).returncode == 0


def start(cfg: StackConfig) -> None:
    pg_bin, base = _pg_bin(), data_dir(cfg)
    data, log = base / "data", base / "postgres.log"
    if running(cfg):
        return
    base.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_USER)
        os.chown(base, pw.pw_uid, grp.getgrnam(PG_USER).gr_gid)
        base.chmod(0o755)
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            _as_pg(
                [
                    str(pg_bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PG_USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),  # noqa: E501
            check=True,
            capture_output=True,
        )
        if cfg.secure:
            _secure_hba(cfg, data)
    if cfg.secure:
        opts_tls = _tls_options(cfg, base)
    elif cfg.host != "127.0.0.1":  # the worker hosts' network (infra/netns.py) connects from its /24
        hba = data / "pg_hba.conf"
        line = f"host all all {cfg.host}/24 trust\n"
        if line not in hba.read_text():
            with open(hba, "a") as f:
                f.write(line)
    # fsync off: this cluster is a throwaway for demos and tests, never a user's real database
    opts = (
        f"-p {cfg.pg_port} -k {base} -c listen_addresses={cfg.host} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    ) + (opts_tls if cfg.secure else "")
    res = subprocess.run(
        _as_pg([str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", opts, "start"]),
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise StackError(f"PostgreSQL failed to start: {res.stderr.strip()}\n{tail}")
    wait("PostgreSQL", lambda: port_open(cfg.pg_port, cfg.host), 30, log)
    # over the server's own socket (trusted, reachable by its user only): the TCP port may
    # already want TLS and a password
    psql = ["psql", "-h", str(base), "-p", str(cfg.pg_port), "-U", PG_USER, "-v", "ON_ERROR_STOP=1"]
    exists = subprocess.run(
        [*psql, "-tAc", f"SELECT 1 FROM pg_database WHERE datname='{PG_DATABASE}'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run([*psql, "-c", f"CREATE DATABASE {PG_DATABASE}"], check=True, capture_output=True)
    if cfg.secure:  # by stdin, never on a command line
        subprocess.run(
            [*psql, "-f", "-"],
            input=f"ALTER ROLE {PG_USER} PASSWORD '{cfg.passwords[PG_USER]}';\n",
            check=True,
            capture_output=True,
            text=True,
        )


def _secure_hba(cfg: StackConfig, data: Path) -> None:
    """TCP only over TLS with a password (SCRAM); a connection without TLS is refused outright.
    The server's socket stays trusted for the stack's own administration, reachable by the
    server's user only (unix_socket_permissions)."""
    nets = ["127.0.0.1/32"] + ([f"{cfg.host}/24"] if cfg.host != "127.0.0.1" else [])
    lines = ["local all all trust"]
    lines += [f"hostssl all all {net} scram-sha-256" for net in nets]
    lines += ["hostnossl all all 0.0.0.0/0 reject", "hostnossl all all ::/0 reject"]
    (data / "pg_hba.conf").write_text("\n".join(lines) + "\n")


def _tls_options(cfg: StackConfig, base: Path) -> str:
    """The server's certificate and key (copied beside the data, the key the server's own and
    private as PostgreSQL demands) as server options."""
    from infra import tls

    certs = tls.Certificates(cfg.state_dir / "tls")
    cert, key = base / "server.crt", base / "server.key"
    with private_files():
        shutil.copyfile(certs.cert("postgres"), cert)
        shutil.copyfile(certs.key("postgres"), key)
    key.chmod(0o600)
    tls.give_to(key, PG_USER)
    tls.give_to(cert, PG_USER)
    return f" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key} -c unix_socket_permissions=0700"


def stop(cfg: StackConfig, mode: str = "fast") -> bool:
    if not running(cfg):
        return False
    subprocess.run(
        _as_pg([str(_pg_bin() / "pg_ctl"), "-D", str(data_dir(cfg) / "data"), "-m", mode, "-w", "stop"]),
        capture_output=True,
    )
    return True


def pid(cfg: StackConfig) -> int | None:
    """The postmaster's PID (postmaster.pid's first line)."""
    try:
        return int((data_dir(cfg) / "data" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
