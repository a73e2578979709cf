"""Bring the local stack (Kafka, PostgreSQL, S3) up or down.

    python -m infra.stack up      # idempotent; waits for every service; prints its settings
    python -m infra.stack up --kafka-nodes 3   # first start only: a 3-node KRaft cluster
    python -m infra.stack up --secure   # first start only: TLS, SASL/SCRAM and ACLs (infra/secure.py)
    python -m infra.stack env --as worker   # a secure stack's settings as one Kafka principal
    python -m infra.stack down    # stops only the processes this stack started (by PID)
    python -m infra.stack env     # prints the settings as `export` lines
    python -m infra.stack status

State lives in one directory (default `.stack/` in the repo, env VS_STACK_DIR). Ports are
chosen on the first `up` (env VS_KAFKA_PORT, VS_PG_PORT, VS_S3_PORT, or `--free-ports`)
and remembered in the state directory, as are the generated S3 credentials and the Kafka
topic the S3 server publishes the bucket's events to (VS_S3_EVENTS_TOPIC, default
image-keys: a photo put into the bucket goes straight to the workers; "" for none).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import shutil
import sys
from dataclasses import asdict, fields
from pathlib import Path

from infra import secure as secure_mod
from infra import services, tls
from infra.process import private_files
from infra.services import SERVICES, StackConfig

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE = REPO / ".stack"


def default_libs_dir() -> Path:
    return Path(os.environ.get("VS_LIBS_DIR", DEFAULT_STATE / "libs"))


def load_or_create(
    state_dir: Path,
    libs_dir: Path | None = None,
    free_ports: bool = False,
    kafka_nodes: int | None = None,
    host: str = "127.0.0.1",
    s3_events_topic: str = "",
    secure: bool | None = None,
) -> StackConfig:
    """The stack's config: read from state_dir/config.json, or chosen now and saved there.
    kafka_nodes (default 1) is chosen on the first `up` too; another count later is an error.
    s3_events_topic: where the S3 server publishes the bucket's events ("" for nowhere)."""
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    saved = state_dir / "config.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        data["state_dir"], data["libs_dir"] = Path(data["state_dir"]), Path(data["libs_dir"])
        known = {f.name for f in fields(StackConfig)}  # a field a later version dropped is ignored
        cfg = StackConfig(**{k: v for k, v in data.items() if k in known})
        if kafka_nodes is not None and kafka_nodes != cfg.kafka_nodes:
            raise services.StackError(
                f"the stack in {state_dir} was created with {cfg.kafka_nodes} Kafka node(s): "
                f"`down`, remove {saved} (and its data), then `up --kafka-nodes {kafka_nodes}`"
            )
        if secure is not None and secure != cfg.secure:
            raise services.StackError(
                f"the stack in {state_dir} was created {'with' if cfg.secure else 'without'} --secure: "
                f"`down`, remove {saved} (and its data) to change it"
            )
        return cfg
    if secure and (kafka_nodes or 1) > 1:
        raise services.StackError("--secure runs one Kafka node")
    nodes = kafka_nodes or 1

    def port(env: str, default: int) -> int:
        return services.free_port() if free_ports else int(os.environ.get(env, default))

    cfg = StackConfig(
        state_dir=state_dir,
        libs_dir=(libs_dir or default_libs_dir()).resolve(),
        kafka_port=port("VS_KAFKA_PORT", 59092),
        kafka_controller_port=port("VS_KAFKA_CONTROLLER_PORT", 59093),
        pg_port=port("VS_PG_PORT", 55432),
        s3_port=port("VS_S3_PORT", 59000),
        # generated per stack, never written in code; kept in the state dir (mode 0600)
        s3_access_key="vs-" + secrets.token_hex(6),
        s3_secret_key=secrets.token_urlsafe(24),
        kafka_nodes=nodes,
        # nodes 2..N: a broker and a controller port each (59094, 59095, 59096, ... by default)
        kafka_extra_ports=[services.free_port() if free_ports else 59094 + i for i in range(2 * (nodes - 1))],
        host=host,
        # versitygw 1.8 cannot authenticate to Kafka: a secure stack's bucket sends no events
        s3_events_topic="" if secure else s3_events_topic,
        secure=bool(secure),
        passwords=secure_mod.new_passwords() if secure else {},
    )
    data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()}
    with private_files():
        saved.write_text(json.dumps(data, indent=2))
    saved.chmod(0o600)
    return cfg


def up(cfg: StackConfig, only: tuple[str, ...] = tuple(SERVICES)) -> None:
    if cfg.secure:
        tls.ensure(cfg.state_dir / "tls", cfg.host)
    for name, service in SERVICES.items():
        if name in only:
            service.start(cfg)
    if cfg.secure and "kafka" in only:
        secure_mod.start(cfg)
    write_env_file(cfg)


def down(cfg: StackConfig, only: tuple[str, ...] = tuple(SERVICES)) -> list[str]:
    return [name for name, service in reversed(SERVICES.items()) if name in only and service.stop(cfg)]


def discard(cfg: StackConfig) -> None:
    """Stop a throwaway stack (a test's, a benchmark's) and delete its state and data,
    PostgreSQL's included: as root that lives outside the state directory (infra/postgres.py)."""
    from infra import postgres

    down(cfg)
    pg_dir = postgres.data_dir(cfg)
    shutil.rmtree(cfg.state_dir, ignore_errors=True)
    shutil.rmtree(pg_dir, ignore_errors=True)


def status(cfg: StackConfig) -> dict[str, bool]:
    return {name: service.running(cfg) for name, service in SERVICES.items()}


SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "KAFKA_SASL_PASSWORD", "DATABASE_URL")


def env_lines(cfg: StackConfig, kafka_user: str = "admin", reveal: bool = True) -> str:
    """The settings as `export` lines; without `reveal`, the secure stack's secrets say where
    they are instead (a terminal's scroll-back is a log too)."""
    env = cfg.env(kafka_user)
    if cfg.secure and not reveal:
        env = {k: f"<in {cfg.state_dir / 'stack.env'}>" if k in SECRET_VARS else v for k, v in env.items()}
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def write_env_file(cfg: StackConfig) -> Path:
    path = cfg.state_dir / "stack.env"
    with private_files():
        path.write_text(env_lines(cfg))
    path.chmod(0o600)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m infra.stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["up", "down", "env", "status"])
    ap.add_argument("--state-dir", type=Path, default=Path(os.environ.get("VS_STACK_DIR", DEFAULT_STATE)))
    ap.add_argument("--only", action="append", choices=list(SERVICES), help="act on this service only (repeatable)")
    ap.add_argument("--free-ports", action="store_true", help="on first start, pick free ports")
    ap.add_argument(
        "--kafka-nodes", type=int, choices=range(1, 10), metavar="N", help="on first start: a KRaft cluster of N nodes"
    )
    ap.add_argument(
        "--secure", action="store_true", help="on first start: TLS, SASL/SCRAM and ACLs (docs/deploying/security.md)"
    )
    ap.add_argument(
        "--as", dest="kafka_user", default="admin", choices=secure_mod.KAFKA_USERS, help="env: as this Kafka principal"
    )
    args = ap.parse_args(argv)
    only = tuple(args.only or SERVICES)
    if args.command == "down" and not (args.state_dir / "config.json").exists():
        print("nothing to stop: no stack in", args.state_dir)
        return 0
    try:
        cfg = load_or_create(
            args.state_dir,
            free_ports=args.free_ports,
            kafka_nodes=args.kafka_nodes,
            # live from S3: the bucket's events go to the workers' topic (KAFKA_TOPIC's default)
            s3_events_topic=os.environ.get("VS_S3_EVENTS_TOPIC", "image-keys"),
            secure=True if args.secure else None,
        )
    except services.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "up":
            up(cfg, only)
            print(f"stack up in {cfg.state_dir}; settings (also in {cfg.state_dir / 'stack.env'}):", file=sys.stderr)
            print(env_lines(cfg, reveal=False), end="")
        elif args.command == "down":
            print("stopped:", ", ".join(down(cfg, only)) or "nothing was running")
        elif args.command == "env":
            print(env_lines(cfg, args.kafka_user), end="")
        else:
            for name, running in status(cfg).items():
                print(f"{name:9s} {'running' if running else 'stopped'}")
    except services.StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
