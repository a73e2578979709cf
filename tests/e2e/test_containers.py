"""The Dockerfile and docker-compose.yml, run for real in podman (the machine has no Docker
engine): the image's worker classifies against the local stack as nobody on a read-only root,
and podman-compose brings the whole compose stack up, rows appear, and `down -v` leaves
nothing behind. The public base images are stand-ins built here (infra/images.py): no registry
of container images is reachable from this machine.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from infra import images
from infra.fleet import ARTIFACTS, REPO, counts, fleet_env, run

NOBODY = 65534
PIPELINE_VARS = ("KAFKA_", "S3_", "AWS_", "DATABASE_", "FAUST_", "BROKER_", "RETRY_")


@pytest.fixture(scope="module")
def built(stack_libs, root) -> dict[str, str]:
    """Every image, built once (the project's from scratch: its torch layer is the long part)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return images.ensure_all(stack_libs, ARTIFACTS / "podman-build.log")


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return images.podman(*args, check=check)


def _photos(dev_images: Path, dest: Path, n: int) -> list[Path]:
    """Copies, not symlinks: a container sees the mounted folder, not what links point to."""
    dest.mkdir()
    return [Path(shutil.copy(p, dest)) for p in sorted(dev_images.glob("*.JPEG"))[:n]]


def test_the_image_runs_a_worker_as_nobody_on_a_read_only_root(
    built, stack_settings, db_conn, dev_images, stack_env, weights_path, tmp_path
):
    env = fleet_env(stack_settings, stack_env)
    photos = _photos(dev_images, tmp_path / "photos", 24)
    run([sys.executable, "upload.py", str(photos[0].parent)], env)
    env_file = tmp_path / "worker.env"  # secrets in a file, not on a command line ps shows
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items() if k.startswith(PIPELINE_VARS)))
    env_file.chmod(0o600)
    name = f"vs-test-worker-{secrets.token_hex(4)}"
    podman(
        "run", "-d", "--name", name, "--network", "host",
        "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",
        "--env-file", str(env_file), "-e", "TORCH_THREADS=1", "-e", "DECODE_WORKERS=1",
        "-e", f"MODEL_WEIGHTS=/models/{weights_path.name}", "-v", f"{weights_path.parent}:/models:ro",
        built["project"],
    )  # fmt: skip
    try:
        assert "sent 24 of 24 keys" in run([sys.executable, "-m", "producer"], env).stdout
        deadline = time.monotonic() + 300
        while sum(counts(stack_settings)) < 24 and time.monotonic() < deadline:
            assert _state(name) == "running", _logs(name)
            time.sleep(1)
        assert counts(stack_settings) == (24, 0), _logs(name)
        assert podman("exec", name, "id", "-u").stdout.strip() == str(NOBODY)
        assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name).stdout.strip() == "true"
        for place in ("/app", "/usr/local/python", "/var/tmp", "/"):
            probe = podman("exec", name, "touch", f"{place}/.vs-probe", check=False)
            assert probe.returncode != 0 and "Read-only file system" in probe.stderr, (place, probe)
        podman("exec", name, "touch", "/tmp/.vs-probe")
        cache = podman("exec", name, "sh", "-c", "ls /tmp/visionscaling-cache").stdout
        assert ".onnx" in cache  # the ONNX export went where the image's ENV says
        podman("stop", "-t", "60", name)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0", _logs(name)
    finally:
        text = _logs(name)
        (ARTIFACTS / "container-worker.log").write_text(text)
        podman("rm", "-f", name, check=False)
    assert "PermissionError" not in text and "Read-only file system" not in text, text[-4000:]
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT DISTINCT model FROM prediction_results")
        assert cur.fetchall() == [(stack_settings.model_name,)]


def test_compose_brings_up_the_whole_stack_and_down_leaves_nothing(built, dev_images, weights_path, tmp_path):
    project = f"vstest{secrets.token_hex(3)}"
    photos = _photos(dev_images, tmp_path / "photos", 30)
    env = {
        **images.podman_env(),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(12),
        "S3_ACCESS_KEY": "vs" + secrets.token_hex(8),
        "S3_SECRET_KEY": secrets.token_urlsafe(24),
        "VIEWER_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "IMAGES_DIR": str(photos[0].parent),
        "MODELS_DIR": str(weights_path.parent),
        "VIEWER_PORT": str(_free_port()),
    }
    compose = ["podman-compose", "-p", project, "-f", str(REPO / "docker-compose.yml")]
    log = ARTIFACTS / "compose.log"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w") as out:
            subprocess.run([*compose, "up", "-d"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, check=True)
        deadline = time.monotonic() + 420
        rows: list[str] = []
        while len(rows) < len(photos) and time.monotonic() < deadline:
            time.sleep(3)
            rows = _psql(project, "SELECT image_key || ' ' || hostname FROM prediction_results").splitlines()
        assert sorted(r.split()[0] for r in rows) == sorted(p.name for p in photos), _all_logs(project)
        assert {r.split()[1] for r in rows} <= {"worker-1", "worker-2"}
        assert _psql(project, "SELECT count(*) FROM prediction_errors") == "0"
        assert _state(f"{project}_worker-1_1") == _state(f"{project}_worker-2_1") == "running"
        login = urllib.request.urlopen(f"http://127.0.0.1:{env['VIEWER_PORT']}/login", timeout=10)
        assert login.status == 200
        assert _psql(project, "SELECT name || ' ' || role FROM viewer_users") == "admin admin"
    finally:
        (ARTIFACTS / "compose-containers.log").write_text(_all_logs(project))
        with open(log, "a") as out:
            subprocess.run([*compose, "down", "-v"], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    label = f"label=io.podman.compose.project={project}"
    assert podman("ps", "-a", "-q", "--filter", label).stdout.strip() == ""
    assert podman("volume", "ls", "-q", "--filter", label).stdout.strip() == ""
    assert project not in podman("pod", "ls", "--format", "{{.Name}}").stdout
    # podman-compose 1.0.3's `down` keeps the project's network, which `docker compose down` removes
    networks = [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split() if project in n]
    assert networks == [f"{project}_default"]
    podman("network", "rm", networks[0])


def _psql(project: str, sql: str) -> str:
    psql = ["psql", "-U", "postgres", "-d", "visionscaling", "-tAc", sql]
    res = podman("exec", f"{project}_postgres_1", *psql, check=False)
    return res.stdout.strip() if res.returncode == 0 else ""


def _state(name: str) -> str:
    return podman("inspect", "--format", "{{.State.Status}}", name, check=False).stdout.strip()


def _logs(name: str) -> str:
    res = podman("logs", name, check=False)
    return res.stdout + res.stderr


def _all_logs(project: str) -> str:
    names = podman("ps", "-a", "--format", "{{.Names}}", "--filter", f"label=io.podman.compose.project={project}")
    parts = [f"==== {n} ({_state(n)}, {_restarts(n)} restarts)\n{_logs(n)[-6000:]}\n" for n in names.stdout.split()]
    return "".join(parts)


def _restarts(name: str) -> str:
    return podman("inspect", "--format", "{{.RestartCount}}", name, check=False).stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
