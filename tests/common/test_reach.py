"""Kafka out of reach, as a new user meets it (the stack not started, a typo in the address):
each command-line tool says once which service at which address, and why, within seconds, and
exits 2; and librdkafka's retry lines are rate-limited for the clients that keep trying.
No service is needed: nothing listens on port 1, and .invalid never resolves."""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.reach import OncePerInterval

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {
    "producer": [sys.executable, "-m", "producer", "--limit", "1"],
    "status": [sys.executable, "-m", "consumer.status"],
    "worker": [str(Path(sys.executable).parent / "faust"), "-A", "consumer.app", "worker", "-l", "info"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    "address, says",
    [
        ("127.0.0.1:1", "connection refused (nothing listening there); is Kafka running"),
        ("kafka.no-such-host.invalid:9092", "the host name does not resolve; check KAFKA_BOOTSTRAP_SERVERS"),
    ],
)
def test_a_command_says_once_that_kafka_is_out_of_reach_and_exits_2(command, address, says, tmp_path):
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": address,
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "HOME": str(tmp_path),
    }
    started = time.monotonic()
    done = subprocess.run(COMMANDS[command], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines[:5]
    assert lines[0].startswith(f"error: cannot reach Kafka at {address} (KAFKA_BOOTSTRAP_SERVERS): {says}")
    assert seconds < 30  # a bound for the test, not a speed figure: it was minutes of retries


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_ca_file_the_kafka_client_cannot_use_is_one_line_and_exit_2(command, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(ca),
        "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(COMMANDS[command], env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines[:5]
    assert lines[0].startswith(f"error: cannot use KAFKA_SSL_CAFILE={ca}: "), lines[0]
    assert lines[0].endswith("is it a PEM certificate this user may read?")


def test_a_repeated_line_is_logged_once_per_interval_with_a_count_of_the_rest(caplog):
    logger = logging.getLogger("test.reach.once")
    logger.addFilter(OncePerInterval(interval=0.3))
    with caplog.at_level(logging.ERROR, logger="test.reach.once"):
        for ms in range(50):
            logger.error("Connect to 127.0.0.1:1 failed: Connection refused (after %dms in state CONNECT)", ms)
        logger.error("another kind of line")
        time.sleep(0.35)
        logger.error("Connect to 127.0.0.1:1 failed: Connection refused (after 7ms in state CONNECT)")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and messages[1] == "another kind of line"
    assert messages[0].endswith("(after 0ms in state CONNECT)")
    assert "(49 more like it in the last" in messages[2]


def test_a_librarys_loggers_let_each_kind_of_line_through_once_per_interval(caplog):
    import aiokafka  # noqa: F401 - makes its loggers

    from common.reach import quiet

    quieted = quiet("aiokafka", interval=60)
    assert "aiokafka.conn" in quieted and "aiokafka.consumer.group_coordinator" in quieted
    quiet("aiokafka", interval=60)  # twice is once
    assert sum(isinstance(f, OncePerInterval) for f in logging.getLogger("aiokafka.conn").filters) == 1
    with caplog.at_level(logging.WARNING):
        for attempt in range(200):
            logging.getLogger("aiokafka.conn").warning("Unable connect to node with id %d: refused", attempt)
        logging.getLogger("aiokafka.client").error("Unable to update metadata from [1]")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")]
    assert lines == ["Unable connect to node with id 0: refused", "Unable to update metadata from [1]"]
    for name in quieted:  # leave the process's loggers as they were for the other tests
        target = logging.getLogger(name)
        target.filters = [f for f in target.filters if not isinstance(f, OncePerInterval)]
