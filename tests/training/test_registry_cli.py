"""python -m training's registry commands on the real stack (PostgreSQL), with versions
registered directly: what is refused, with one line and exit 2, and that nothing changed."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from db import registry
from db.connection import connect

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(migrated) -> dict[str, str]:
    return {**os.environ, **migrated.env()}


@pytest.fixture
def name(stack_settings) -> str:
    """A fresh model name with version 1 in production and version 2 a candidate (rows only:
    no artefact is needed to change stages)."""
    name = f"reg-{uuid.uuid4().hex[:6]}"
    conn = connect(stack_settings)
    try:
        with conn, conn.cursor() as cur:
            for version in (1, 2):
                registry.insert(
                    cur,
                    registry.ModelVersion(
                        name,
                        version,
                        "0" * 64,
                        f"s3://models/registry/{name}/{version}/",
                        "squeezenet1_1",
                        ["a", "b"],
                        {},
                        {},
                        "",
                    ),
                )
        registry.set_stage(conn, name, 1, "production")
    finally:
        conn.close()
    return name


def stages(settings, name: str) -> dict[int, str]:
    conn = connect(settings)
    try:
        with conn:
            return {mv.version: mv.stage for mv in registry.list_versions(conn, name)}
    finally:
        conn.close()


def cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "training", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def assert_one_line_error(res: subprocess.CompletedProcess, what: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and what in lines[0], res.stderr


@pytest.mark.parametrize(
    "command, suffix",
    [
        ("promote", "@x"),
        ("shadow", "@-1"),
        ("retire", "@1.5"),
        ("show", "@"),
        ("promote", "@²"),
        ("shadow", "@²"),
        ("retire", "@²"),
        ("show", "@²"),
        ("promote", "@99999999999"),
        ("show", "@99999999999"),
    ],
)
def test_a_version_that_is_not_a_plain_number_is_one_line_and_changes_nothing(
    env, stack_settings, name, command, suffix
):
    assert_one_line_error(cli(env, command, name + suffix), "not a version number")
    assert stages(stack_settings, name) == {1: "production", 2: "candidate"}


@pytest.mark.parametrize("ref", ["@3", "a b@1", "café@1"])
def test_a_reference_without_a_model_name_is_one_line(env, ref):
    assert_one_line_error(cli(env, "promote", ref), "not a model name")


@pytest.mark.parametrize("command", ["shadow", "retire"])
def test_the_production_version_is_not_taken_out_of_production_leaving_none(env, stack_settings, name, command):
    """A worker started after would find no production version and could not start."""
    assert_one_line_error(cli(env, command, f"{name}@1"), f"{name}@1 is the production version")
    assert stages(stack_settings, name) == {1: "production", 2: "candidate"}
    assert cli(env, "promote", f"{name}@2").returncode == 0  # the way: promote another one
    assert cli(env, command, f"{name}@1").returncode == 0
    assert stages(stack_settings, name) == {1: "shadow" if command == "shadow" else "retired", 2: "production"}


def test_nor_through_the_registry_module(stack_settings, name):
    conn = connect(stack_settings)
    try:
        with pytest.raises(registry.RegistryError, match="production version"):
            registry.set_stage(conn, name, 1, "candidate")
    finally:
        conn.close()
    assert stages(stack_settings, name) == {1: "production", 2: "candidate"}
