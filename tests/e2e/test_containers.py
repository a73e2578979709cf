"""The Dockerfile and docker-compose.yml, run for real in podman (the machine has no Docker
engine): the image's worker classifies against the local stack as nobody on a read-only root,
and podman-compose brings the whole compose stack up, rows appear, and `down -v` leaves
nothing behind. The public base images are stand-ins built here (infra/images.py): no registry
of container images is reachable from this machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from infra import images, secure
from infra.fleet import ARTIFACTS, PIPELINE_TABLES, REPO, counts, fleet_env, run, truncate
from infra.process import free_port

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
    name = _run_worker(tmp_path, env, weights_path)
    try:
        assert "sent 24 of 24 keys" in run([sys.executable, "-m", "producer"], env).stdout
        deadline = time.monotonic() + 300
        while sum(counts(stack_settings)) < 24 and time.monotonic() < deadline:
            assert _state(name) == "running", _logs(name)
            time.sleep(1)
        assert counts(stack_settings) == (24, 0), _logs(name)
        assert podman("exec", name, "id", "-u").stdout.strip() == str(NOBODY)
        assert podman("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", name).stdout.strip() == "true"
        purelib = podman("exec", name, "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        for place in ("/app", purelib.stdout.strip(), "/var/tmp", "/"):  # the code, the Python packages
            probe = podman("exec", name, "touch", f"{place}/.vs-probe", check=False)
            assert probe.returncode != 0 and "Read-only file system" in probe.stderr, (place, probe)
        podman("exec", name, "touch", "/tmp/.vs-probe")
        cache = podman("exec", name, "sh", "-c", "ls /tmp/visionscaling-cache").stdout
        assert ".onnx" in cache  # the ONNX export went where the image's ENV says
        _stop_cleanly(name)
    finally:
        text = _remove(name, "container-worker.log")
    assert "PermissionError" not in text and "Read-only file system" not in text, text[-4000:]
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT DISTINCT model FROM prediction_results")
        assert cur.fetchall() == [(stack_settings.model_name,)]


def test_the_image_runs_a_worker_on_the_locked_down_stack(built, secure_stack, dev_images, weights_path, tmp_path):
    """The image with the secured stack's settings: Kafka over SASL_SSL as the `worker` principal,
    PostgreSQL over verified TLS as a vs_worker login, S3 over HTTPS; the CA mounted read-only."""
    tag = secrets.token_hex(3)
    names = {"KAFKA_TOPIC": f"img-{tag}", "KAFKA_DEAD_LETTER_TOPIC": f"img-{tag}-dead", "FAUST_APP_ID": f"img-{tag}"}
    secure.grant(secure_stack.cfg, names["KAFKA_TOPIC"], names["KAFKA_DEAD_LETTER_TOPIC"], names["FAUST_APP_ID"])
    names["S3_BUCKET"] = f"img-{tag}"
    settings = secure_stack.settings("admin", None, **names)
    photos = _photos(dev_images, tmp_path / "photos", 12)
    run([sys.executable, "upload.py", str(photos[0].parent)], secure_stack.env("admin", None, **names))
    worker = fleet_env(settings, secure_stack.env("worker", "worker", **names))
    # the CA certificate alone (no key), at the path of KAFKA_SSL_CAFILE, S3_CA_BUNDLE and DATABASE_URL's
    # sslrootcert; a copy others may read, since the stack keeps its files 0600 and the image runs as nobody
    ca = worker["KAFKA_SSL_CAFILE"]
    readable = Path(shutil.copy(ca, tmp_path / "ca.pem"))
    readable.chmod(0o644)
    name = _run_worker(tmp_path, worker, weights_path, "-v", f"{readable}:{ca}:ro")
    try:
        assert (
            "sent 12 of 12 keys"
            in run([sys.executable, "-m", "producer"], secure_stack.env("producer", "viewer", **names)).stdout
        )
        deadline = time.monotonic() + 300
        while sum(counts(settings)) < 12 and time.monotonic() < deadline:
            assert _state(name) == "running", _logs(name)
            time.sleep(1)
        assert counts(settings) == (12, 0), _logs(name)
        _stop_cleanly(name)
    finally:
        text = _remove(name, "container-worker-secure.log")
        truncate(settings, PIPELINE_TABLES)  # the secure stack is the session's: later tests count every key
    leaked = [what for what, value in secure_stack.named_secrets().items() if value in text]
    assert not leaked, f"secrets in the worker's log: {leaked}"


def _stop_cleanly(name: str) -> None:
    """`podman stop`: SIGTERM, then the worker's own shutdown, which must end with exit 0."""
    podman("stop", "-t", "60", name)
    assert podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0", _logs(name)


def _remove(name: str, artifact: str) -> str:
    """The container's log, kept as a test artifact; then the container removed."""
    text = _logs(name)
    (ARTIFACTS / artifact).write_text(text)
    podman("rm", "-f", name, check=False)
    return text


def _run_worker(tmp_path: Path, env: dict, weights_path: Path, *extra: str) -> str:
    """A worker from the image, detached, as the image runs it: its user, a read-only root, /tmp
    the only writable place; the pipeline's settings from an env file (secrets off the command line)."""
    env_file = tmp_path / f"worker-{secrets.token_hex(3)}.env"
    with open(os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write("".join(f"{k}={v}\n" for k, v in env.items() if k.startswith(PIPELINE_VARS)))
    name = f"vs-test-worker-{secrets.token_hex(4)}"
    podman(
        "run", "-d", "--name", name, "--network", "host",
        "--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp",
        "--env-file", str(env_file), "-e", "TORCH_THREADS=1", "-e", "DECODE_WORKERS=1",
        "-e", f"MODEL_WEIGHTS=/models/{weights_path.name}", "-v", f"{weights_path.parent}:/models:ro",
        *extra, images.PROJECT,
    )  # fmt: skip
    return name


def test_compose_brings_up_the_whole_stack_and_down_leaves_nothing(built, dev_images, weights_path, tmp_path):
    project = f"vstest{secrets.token_hex(3)}"
    photos = _photos(dev_images, tmp_path / "photos", 31)
    late = Path(shutil.move(photos.pop(), tmp_path))  # put into the bucket later, with no producer run
    env = {
        **images.podman_env(),
        "POSTGRES_PASSWORD": secrets.token_urlsafe(12),
        "S3_ACCESS_KEY": "vs" + secrets.token_hex(8),
        "S3_SECRET_KEY": secrets.token_urlsafe(24),
        "VIEWER_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "IMAGES_DIR": str(photos[0].parent),
        "MODELS_DIR": str(weights_path.parent),
        "VIEWER_PORT": str(free_port()),
    }
    hidden = [env[k] for k in ("POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "VIEWER_ADMIN_PASSWORD")]
    files = ["-f", str(REPO / "docker-compose.yml"), "-f", str(REPO / "docker-compose.podman.yml")]
    compose = ["podman-compose", "-p", project, *files]
    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    (ARTIFACTS / "compose.log").unlink(missing_ok=True)
    try:
        _compose([*compose, "up", "-d"], env, hidden)
        keys = _wait_for_rows(project, len(photos))
        assert sorted(k for k, _ in keys) == sorted(p.name for p in photos), _all_logs(project)
        assert {host for _, host in keys} <= {"worker-1", "worker-2"}
        assert _psql(project, "SELECT count(*) FROM prediction_errors") == "0"
        assert _state(f"{project}_worker-1_1") == _state(f"{project}_worker-2_1") == "running"
        login = urllib.request.urlopen(f"http://127.0.0.1:{env['VIEWER_PORT']}/login", timeout=10)
        assert login.status == 200
        assert _psql(project, "SELECT name || ' ' || role FROM viewer_users") == "admin admin"
        for service in ("kafka", "postgres"):  # the health checks Docker runs and podman-compose 1.0.3 does not
            kind, *test = spec[service]["healthcheck"]["test"]
            cmd = ["sh", "-c", test[0]] if kind == "CMD-SHELL" else test
            assert podman("exec", f"{project}_{service}_1", *cmd, check=False).returncode == 0, service
        for service in ("worker-1", "viewer"):  # read_only: the code and / (podman adds tmpfs on /run, /var/tmp)
            for place in ("/app", "/"):
                probe = podman("exec", f"{project}_{service}_1", "touch", f"{place}/.vs-probe", check=False)
                assert probe.returncode != 0 and "Read-only file system" in probe.stderr, (service, place)
        # live: one more photo uploaded; only the S3 server's event can bring it to a worker
        shutil.copy(late, photos[0].parent)
        podman("start", "-a", f"{project}_upload_1")
        assert late.name in [k for k, _ in _wait_for_rows(project, len(photos) + 1)], _all_logs(project)
        assert _logs(f"{project}_producer_1").count("sent ") == 1  # it ran once, before the late photo
    finally:
        (ARTIFACTS / "compose-containers.log").write_text(_redacted(_all_logs(project), hidden))
        _compose([*compose, "down", "-v"], env, hidden, check=False)
        # podman-compose 1.0.3's `down` keeps the project's network, which `docker compose down` removes
        networks = [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split() if project in n]
        for network in networks:
            podman("network", "rm", network, check=False)
    label = f"label=io.podman.compose.project={project}"
    assert podman("ps", "-a", "-q", "--filter", label).stdout.strip() == ""
    assert podman("volume", "ls", "-q", "--filter", label).stdout.strip() == ""
    assert project not in podman("pod", "ls", "--format", "{{.Name}}").stdout
    assert networks == [f"{project}_default"]


def _compose(cmd: list[str], env: dict, hidden: list[str], check: bool = True) -> None:
    """podman-compose prints each podman command with its `-e` values: the log gets them hidden."""
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    with open(ARTIFACTS / "compose.log", "a") as log:
        log.write(_redacted(res.stdout + res.stderr, hidden))
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[3:])} exited {res.returncode}; see {ARTIFACTS / 'compose.log'}")


def _redacted(text: str, hidden: list[str]) -> str:
    for value in hidden:
        text = text.replace(value, "***")
    return text


def _wait_for_rows(project: str, n: int, timeout: float = 420) -> list[tuple[str, str]]:
    """(image key, hostname) of prediction_results once it has n rows, or at the deadline."""
    deadline = time.monotonic() + timeout
    rows: list[str] = []
    while len(rows) < n and time.monotonic() < deadline:
        time.sleep(2)
        rows = _psql(project, "SELECT image_key || ' ' || hostname FROM prediction_results").splitlines()
    return [tuple(r.split(" ", 1)) for r in rows]


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
