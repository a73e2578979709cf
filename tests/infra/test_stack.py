import re
from pathlib import Path

import pytest
import yaml

from infra import process
from infra import stack as stack_mod
from settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_stack_is_up_and_a_second_up_changes_nothing(stack):
    assert stack_mod.status(stack) == {"postgres": True, "kafka": True, "s3": True}
    pids = {name: (stack.state_dir / name / f"{name}.pid").read_text() for name in ("kafka", "versitygw")}
    stack_mod.up(stack)  # idempotent: running services are left alone
    assert pids == {name: (stack.state_dir / name / f"{name}.pid").read_text() for name in pids}
    env = (stack.state_dir / "stack.env").read_text()
    assert f"export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:{stack.kafka_port}" in env
    assert (stack.state_dir / "config.json").stat().st_mode & 0o077 == 0  # holds the S3 secret


def test_s3_checks_signatures(stack):
    import boto3
    import botocore.exceptions

    env = stack.env()

    def client(secret: str):
        return boto3.session.Session().client(
            "s3",
            endpoint_url=env["S3_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=secret,
        )

    client(env["AWS_SECRET_ACCESS_KEY"]).list_buckets()
    with pytest.raises(botocore.exceptions.ClientError, match="SignatureDoesNotMatch|Forbidden|AccessDenied"):
        client("not-the-secret").list_buckets()


def test_free_ports_are_distinct_and_config_is_remembered(tmp_path):
    cfg = stack_mod.load_or_create(tmp_path / "s", free_ports=True)
    ports = {cfg.kafka_port, cfg.kafka_controller_port, cfg.pg_port, cfg.s3_port}
    assert len(ports) == 4
    again = stack_mod.load_or_create(tmp_path / "s")
    assert again == cfg


def test_down_without_a_stack_does_nothing(tmp_path, capsys):
    assert stack_mod.main(["down", "--state-dir", str(tmp_path / "none")]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_kill_only_touches_processes_that_are_ours(tmp_path):
    pidfile = tmp_path / "x.pid"
    pidfile.write_text("1")  # PID 1 is alive but is not ours: its cmdline lacks the marker
    assert process.kill(pidfile, marker=str(tmp_path)) is False


def test_docker_compose_is_valid_and_pinned():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    svc = compose["services"]
    assert {"kafka", "postgres", "s3", "producer", "worker-1", "worker-2", "viewer"} <= set(svc)
    for name, spec in svc.items():
        image = spec["image"]
        assert re.fullmatch(r"[\w./-]+:v?\d[\w.-]*", image), f"{name}: image {image!r} is not pinned to a version"
        assert spec.get("command") or name in ("kafka", "postgres", "s3")
    assert (REPO / svc["worker-1"]["build"] / "Dockerfile").is_file()
    assert svc["worker-1"]["command"][:3] == ["faust", "-A", "consumer.app"]
    # every app setting the compose file sets is a real setting
    fields = {f.upper() for f in Settings.model_fields} | {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }
    assert set(svc["worker-1"]["environment"]) <= fields
    # the variables it requires are documented
    example = (REPO / ".env.example").read_text()
    for var in set(re.findall(r"\$\{(\w+)", (REPO / "docker-compose.yml").read_text())):
        assert var in example, var
