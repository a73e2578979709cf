"""The container images' names and pins, without podman: every image the Dockerfile and
docker-compose.yml name is one that infra/images.py builds for the container tests, and the
Dockerfile installs the torch that pyproject.toml pins."""

from __future__ import annotations

import re

import yaml

from infra import images
from infra.fleet import REPO


def _qualified(name: str) -> str:
    """A short image name as podman and Docker resolve it: Docker Hub, `library/` for one word."""
    if "/" not in name.split(":")[0]:
        name = f"library/{name}"
    return name if name.split("/")[0] in ("docker.io", "localhost") else f"docker.io/{name}"


def test_every_image_the_files_name_is_one_the_container_tests_build():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    named = {spec["image"] for spec in compose["services"].values()}
    named |= set(re.findall(r"^FROM (\S+)", (REPO / "Dockerfile").read_text(), re.M))
    built = set(images.STAND_INS.values())
    for name in named:
        assert _qualified(name) in built or f"localhost/{name}" == images.PROJECT, name


def test_the_dockerfile_installs_the_torch_pyproject_pins():
    pyproject = (REPO / "pyproject.toml").read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    for package in ("torch", "torchvision"):
        pin = re.search(rf'"{package}==([\d.]+)"', pyproject).group(1)
        assert f"{package}=={pin}" in dockerfile, package


def test_the_app_services_run_the_image_the_dockerfile_builds_read_only():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    apps = {name: spec for name, spec in services.items() if spec.get("build")}
    assert {"topics", "migrate", "upload", "producer", "worker-1", "worker-2", "viewer"} == set(apps)
    for name, spec in apps.items():
        assert f"localhost/{spec['image']}" == images.PROJECT, name
        assert spec["read_only"] is True and spec["tmpfs"] == ["/tmp"], name


def test_a_failing_one_shot_stops_docker_compose_instead_of_restarting_forever():
    """Docker waits for `service_completed_successfully` until the container has exited: a
    one-shot restarted without a bound would keep `docker compose up` waiting on a setup error."""
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    awaited = {
        dep
        for spec in services.values()
        for dep, cond in (spec.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    assert awaited == {"topics", "migrate", "upload"}
    for name in awaited:
        restart = services[name].get("restart", "no")
        assert restart == "no" or re.fullmatch(r"on-failure:\d+", restart), name


def test_the_podman_file_only_adds_restarts_to_services_of_the_compose_file():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    podman = yaml.safe_load((REPO / "docker-compose.podman.yml").read_text())["services"]
    assert set(podman) <= set(services)
    assert all(spec == {"restart": "on-failure"} for spec in podman.values())
