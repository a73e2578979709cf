"""A worker runs as the container image runs it: as `nobody`, with the image's environment
(the Dockerfile's ENV), HOME unwritable (/nonexistent), the code and the Python environment
mounted read-only, and only /tmp writable; it must start, classify and stop cleanly.

The sandbox is a private mount namespace (root, as in CI): the repository and the Python
installation are remounted read-only, and a directory nobody cannot traverse on this
machine (pyenv under /root) is masked by a read-only view of just what the worker needs.
"""

from __future__ import annotations

import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from infra.fleet import ARTIFACTS, REPO, counts, fleet_env, run

NOBODY = 65534


def dockerfile_env() -> dict[str, str]:
    """The ENV instruction of the repository's Dockerfile (one, with continuation lines)."""
    lines = (REPO / "Dockerfile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ENV "))
    words: list[str] = []
    for line in lines[start:]:
        text = line.strip()
        if text.startswith("#"):
            continue
        words += shlex.split(text.removeprefix("ENV ").rstrip("\\"))
        if not text.endswith("\\"):
            break
    return dict(word.split("=", 1) for word in words)


def _closed_ancestor(path: Path) -> Path | None:
    """The topmost directory above `path` that others may not traverse (e.g. /root, 0700)."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & stat.S_IXOTH:
            return parent
    return None


def sandbox_script(read_only: list[Path], stage: Path) -> str:
    """Shell run in `unshare --mount`: every path in `read_only` mounted read-only, reachable
    by nobody (a closed ancestor is replaced by an empty tmpfs holding only that path)."""
    cmds = ["set -e", "mount --make-rprivate /"]
    masks: dict[Path, list[tuple[Path, Path]]] = {}
    for i, path in enumerate(read_only):
        closed = _closed_ancestor(path)
        if closed is None:
            cmds += [f"mount --bind {path} {path}", f"mount -o remount,bind,ro {path}"]
        else:
            staged = stage / str(i)
            cmds += [f"mkdir -p {staged}", f"mount --bind {path} {staged}"]
            masks.setdefault(closed, []).append((staged, path))
    for closed, items in masks.items():
        cmds.append(f"mount -t tmpfs -o mode=755 tmpfs {closed}")
        for staged, path in items:
            cmds += [f"mkdir -p {path}", f"mount --bind {staged} {path}", f"mount -o remount,bind,ro {path}"]
    return "\n".join(cmds) + '\nexec "$@"\n'


def test_a_worker_runs_as_nobody_with_read_only_code_and_only_tmp_writable(
    stack_settings, db_conn, dev_images, stack_env, tmp_path
):
    env = fleet_env(stack_settings, stack_env)
    photos = sorted(dev_images.glob("*.JPEG"))[:24]
    upload_dir = tmp_path / "photos"
    upload_dir.mkdir()
    for p in photos:
        (upload_dir / p.name).symlink_to(p)
    run([sys.executable, "upload.py", str(upload_dir)], env)

    stage = Path("/tmp") / f"vs-sandbox-{os.getpid()}"
    stage.mkdir(mode=0o755, exist_ok=True)
    python_home = Path(sys.base_prefix).resolve()
    # the real file: a symlinked ../shared beside a clone in a 0700 directory (mktemp -d) sits
    # under a closed ancestor the sandbox masks, as a mounted volume would not be
    weights_file = Path(env["MODEL_WEIGHTS"]).resolve()
    weights = weights_file.parent
    script = sandbox_script([REPO, python_home, weights], stage)
    # the sandbox itself: even root cannot write the code or the Python installation in it
    for target in (REPO, python_home):
        probe = subprocess.run(
            ["unshare", "--mount", "--", "sh", "-c", script, "sandbox", "touch", str(target / ".vs-probe")],
            capture_output=True,
            text=True,
        )
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe
    image_env = dockerfile_env()
    worker_env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/nonexistent",  # nobody's, as in /etc/passwd: not there, not creatable
        **image_env,
        **{k: env[k] for k in env if k.startswith(("KAFKA_", "S3_", "AWS_", "DATABASE_", "FAUST_", "MODEL_"))},
        # this run's own scratch dirs under /tmp (the image's defaults, made unique per run)
        "MODEL_WEIGHTS": str(weights_file),
        "MODEL_CACHE_DIR": f"{image_env['MODEL_CACHE_DIR']}-{os.getpid()}",
        "FAUST_DATADIR": f"{image_env['FAUST_DATADIR']}-{os.getpid()}",
        "TORCH_THREADS": "1",
        "DECODE_WORKERS": "1",
    }
    cmd = [
        "unshare",
        "--mount",
        "--",
        "sh",
        "-c",
        script,
        "sandbox",
        "setpriv",
        f"--reuid={NOBODY}",
        f"--regid={NOBODY}",
        "--clear-groups",
        "--inh-caps=-all",
        "--",
        "env",
        "-i",
        *[f"{k}={v}" for k, v in worker_env.items()],
        str(Path(sys.executable).parent / "faust"),
        "-A",
        "consumer.app",
        "worker",
        "-l",
        "info",
    ]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "as-nobody-worker.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert "sent 24 of 24 keys" in run([sys.executable, "-m", "producer"], env).stdout
        deadline = time.monotonic() + 300
        while sum(counts(stack_settings)) < 24 and time.monotonic() < deadline:
            assert worker.poll() is None, "the worker exited:\n" + log_path.read_text()[-4000:]
            time.sleep(1)
        assert counts(stack_settings) == (24, 0), log_path.read_text()[-4000:]
        status = Path(f"/proc/{worker.pid}/status").read_text()
        assert f"Uid:\t{NOBODY}\t{NOBODY}" in status
        cache = Path(worker_env["MODEL_CACHE_DIR"])
        assert cache.stat().st_uid == NOBODY and any(cache.glob("*.onnx"))  # written where the image says
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(60) == 0, log_path.read_text()[-4000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        for d in (worker_env["MODEL_CACHE_DIR"], worker_env["FAUST_DATADIR"]):
            subprocess.run(["rm", "-rf", d])
        for staged in stage.iterdir():  # empty mount points: the mounts died with the namespace
            staged.rmdir()
        stage.rmdir()
    text = log_path.read_text()
    assert "PermissionError" not in text and "Read-only file system" not in text, text[-4000:]
    with db_conn, db_conn.cursor() as cur:
        cur.execute("SELECT DISTINCT model FROM prediction_results")
        assert cur.fetchall() == [(stack_settings.model_name,)]
