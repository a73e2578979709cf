"""Every command's --help works without a valid environment or any running service (a user
reads --help before they have set anything up); a broken setting is a clear error at start."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BROKEN_ENV = {
    **os.environ,
    "BATCH_SIZE": "0",  # invalid
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXTT",  # a typo
    "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
}

COMMANDS = {
    "producer": [sys.executable, "-m", "producer"],
    "upload": [sys.executable, "upload.py"],
    "db": [sys.executable, "-m", "db"],
    "classify": [sys.executable, "-m", "consumer.classify"],
    "status": [sys.executable, "-m", "consumer.status"],
    "similar": [sys.executable, "-m", "consumer.similar"],
    "viewer": [sys.executable, "-m", "viewer"],
    "stack": [sys.executable, "-m", "infra.stack"],
    "training": [sys.executable, "-m", "training"],
    "worker": [str(BIN / "faust"), "-A", "consumer.app", "worker"],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_help_needs_no_valid_environment(name):
    res = subprocess.run(
        [*COMMANDS[name], "--help"], env=BROKEN_ENV, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage" in res.stdout.lower(), res.stdout[:500]


def test_a_typo_in_the_security_protocol_is_a_clear_error_not_a_hang():
    res = subprocess.run([*COMMANDS["status"]], env=BROKEN_ENV, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "KAFKA_SECURITY_PROTOCOL" in res.stderr.upper() and "PLAINTEXTT" in res.stderr
