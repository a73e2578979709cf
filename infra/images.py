"""Container images for the container tests (tests/e2e/test_containers.py), built on this
machine because no registry of container images is reachable from it.

1. a Debian bookworm base: `debootstrap --variant=minbase`, imported into podman;
2. stand-ins for the public images the Dockerfile and docker-compose.yml name, built FROM that
   base out of Debian packages and what infra/install.sh already fetched (Kafka's jars, the
   versitygw binary), each tagged with the public name so both files run unchanged
   (infra/containers/<name>/Containerfile says what each keeps of the original's contract);
3. the project's image from its own Dockerfile.

The base is built when podman does not have it yet; the stand-ins and the project's image every
time, as a user would after a change (podman's layer cache keeps that to seconds when nothing
changed, and to the layers after the change otherwise). podman runs with infra/containers/
containers.conf (runc, lower ulimits) through CONTAINERS_CONF: nothing in /etc changes.

    python -m infra.images            # build what is missing, print the tags
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from infra.process import StackError

REPO = Path(__file__).resolve().parent.parent
HERE = REPO / "infra" / "containers"
BASE = "localhost/vs-debian:bookworm-minbase"
# folder under infra/containers -> the name the Dockerfile or docker-compose.yml uses
STAND_INS = {
    "python": "docker.io/library/python:3.11.11-slim-bookworm",
    "kafka": "docker.io/apache/kafka:4.1.1",
    "postgres": "docker.io/library/postgres:15.10-bookworm",
    "versitygw": "docker.io/versity/versitygw:v1.8.0",
}
PROJECT = "localhost/visionscaling:0.1.0"  # docker-compose.yml's `image:` of the app services
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# download.pytorch.org is not reachable here: PyPI's torch wheel, which brings CUDA's (several GB)
TORCH_INDEX_URL = os.environ.get("VS_TORCH_INDEX_URL", "https://pypi.org/simple")


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(HERE / "containers.conf")}


class BuildError(StackError):
    """An image did not build; the message ends with podman's last lines."""


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], env=podman_env(), check=check, capture_output=True, text=True)


def exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def build_base() -> None:
    """Debian bookworm, minbase variant, as one layer (apt's downloaded packages left out)."""
    with tempfile.TemporaryDirectory(prefix="vs-rootfs-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root), DEBIAN_MIRROR],
            check=True,
            capture_output=True,
        )
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["podman", "import", "-q", "-", BASE], stdin=tar.stdout, env=podman_env(), check=True)
        tar.stdout.close()
        if tar.wait() != 0:
            raise BuildError("tar of the bookworm root failed")


def _context(name: str, libs_dir: Path) -> Path:
    """A build context: the stand-in's folder plus what it copies from this machine."""
    ctx = Path(tempfile.mkdtemp(prefix=f"vs-image-{name}-"))
    shutil.copytree(HERE / name, ctx, dirs_exist_ok=True)
    if name == "python":  # this machine's extra CAs (its egress proxy's), for pip inside
        (ctx / "ca").mkdir()
        for crt in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(crt, ctx / "ca")
    elif name == "kafka":
        shutil.copytree(libs_dir / "kafka", ctx / "libs")
    elif name == "versitygw":
        shutil.copy(libs_dir.parent / "bin" / "versitygw", ctx / "versitygw")
    return ctx


def build_stand_in(name: str, libs_dir: Path) -> None:
    ctx = _context(name, libs_dir)
    try:
        res = podman("build", "-q", "-f", str(ctx / "Containerfile"), "-t", STAND_INS[name], str(ctx), check=False)
        if res.returncode != 0:
            raise BuildError(f"podman build of the {name} stand-in failed:\n{res.stderr[-3000:]}")
    finally:
        shutil.rmtree(ctx)


def build_project(log: Path | None = None) -> None:
    """`podman build` of the repository's Dockerfile, as a user would run it."""
    cmd = ["podman", "build", "--build-arg", f"TORCH_INDEX_URL={TORCH_INDEX_URL}", "-t", PROJECT, str(REPO)]
    with open(log or os.devnull, "w") as out:
        res = subprocess.run(cmd, env=podman_env(), stdout=out, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise BuildError(f"podman build of the Dockerfile failed (exit {res.returncode}); log: {log}")


def ensure_all(libs_dir: Path, log: Path | None = None) -> dict[str, str]:
    """Every image the container tests need; name -> tag."""
    missing = [tool for tool in ("podman", "podman-compose", "debootstrap") if shutil.which(tool) is None]
    if missing:
        raise BuildError(f"{', '.join(missing)} not installed: run VS_WITH_CONTAINERS=1 infra/install.sh")
    if not exists(BASE):
        build_base()
    for name in STAND_INS:
        build_stand_in(name, libs_dir)
    build_project(log)
    return {**STAND_INS, "project": PROJECT}


if __name__ == "__main__":
    libs = Path(os.environ.get("VS_LIBS_DIR", REPO / ".stack" / "libs"))
    for name, tag in ensure_all(libs, Path(tempfile.gettempdir()) / "vs-image-build.log").items():
        print(f"{name}: {tag}")
