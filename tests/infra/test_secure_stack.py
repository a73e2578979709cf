"""The secure stack refuses everyone it should: Kafka without TLS, with the wrong CA or the wrong
password, or beyond a principal's ACLs; PostgreSQL without TLS or with the wrong CA; S3 over
plain HTTP. And the command-line tools say so in one line, naming what is wrong, with no secret
in it. (The pipeline through it: tests/e2e/test_secure_pipeline.py.)"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from common.reach import Unreachable, check_kafka, kafka_config
from infra import secure, tls
from infra.fleet import REPO


def _produce(settings, topic: str, idempotent: bool = False) -> KafkaError | None:
    """The delivery error of one message (None: written). Idempotent as the project's producer
    is; not for the principals that must fail, whose PID request would fail first (fatally)."""
    producer = Producer({**kafka_config(settings), "enable.idempotence": idempotent, "message.timeout.ms": 10000})
    errors = []
    producer.produce(topic, b"probe", on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(15)
    return errors[0] if errors else KafkaError(KafkaError._MSG_TIMED_OUT)


def _read(settings, topic: str, group: str) -> KafkaError | bytes | None:
    consumer = Consumer({**kafka_config(settings), "group.id": group, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        for _ in range(20):
            msg = consumer.poll(1)
            if msg is not None:
                return msg.error() or msg.value()
    finally:
        consumer.close()
    return None


def _code(err) -> int | None:
    return err.code() if isinstance(err, KafkaError) else None


def test_kafka_refuses_a_client_without_tls_the_wrong_ca_or_the_wrong_password(secure_stack, tmp_path):
    ok = secure_stack.settings("worker")
    check_kafka(ok)  # the principal with its password and the CA gets in
    plain = ok.model_copy(update={"kafka_security_protocol": "PLAINTEXT", "kafka_sasl_mechanism": None})
    with pytest.raises(Unreachable, match="does not answer in plaintext"):
        check_kafka(plain)
    wrong_ca = secure_stack.settings("worker", KAFKA_SSL_CAFILE=str(tls.other_ca(tmp_path)))
    with pytest.raises(Unreachable, match="over TLS.*KAFKA_SSL_CAFILE"):
        check_kafka(wrong_ca)
    wrong_password = secure_stack.settings("worker", KAFKA_SASL_PASSWORD="not-the-password")
    with pytest.raises(Unreachable, match="SASL authentication failed"):
        check_kafka(wrong_password)


def test_the_tools_say_in_one_line_what_is_wrong_and_never_the_password(secure_stack):
    env = secure_stack.env("monitor", "viewer", KAFKA_SASL_PASSWORD="wrong-" + uuid.uuid4().hex)
    for cmd in (["-m", "consumer.status"], ["-m", "producer", "--stdin"]):
        res = subprocess.run(
            [sys.executable, *cmd], env=env, cwd=REPO, capture_output=True, text=True, input="", timeout=60
        )
        out = res.stdout + res.stderr
        assert res.returncode == 2, out
        assert out.strip().count("\n") == 0 and "SASL authentication failed" in out, out
        assert not any(s in out for s in [*secure_stack.secrets(), env["KAFKA_SASL_PASSWORD"]])


def test_each_principal_may_do_its_part_and_nothing_else(secure_stack):
    topic, dead = secure.IMAGE_TOPIC, secure.DEAD_LETTER_TOPIC
    producer, worker, monitor = (secure_stack.settings(u) for u in ("producer", "worker", "monitor"))
    denied = KafkaError.TOPIC_AUTHORIZATION_FAILED

    assert _produce(producer, topic, idempotent=True) is None  # idempotent: WRITE on the topic suffices (KIP-679)
    assert _code(_produce(worker, topic)) == denied  # a worker cannot write the image topic
    assert _produce(worker, dead) is None  # ... but may write dead letters
    assert _code(_produce(monitor, topic)) == denied
    assert _code(_read(producer, topic, secure.GROUP)) in (denied, KafkaError.GROUP_AUTHORIZATION_FAILED)
    assert _code(_read(worker, topic, "another-group")) == KafkaError.GROUP_AUTHORIZATION_FAILED
    assert _read(worker, topic, secure.GROUP) == b"probe"  # its own group on its topic

    name = f"made-by-worker-{uuid.uuid4().hex[:6]}"
    as_worker = AdminClient(kafka_config(worker))
    with pytest.raises(KafkaException) as made:
        as_worker.create_topics([NewTopic(name, 1, 1)])[name].result(timeout=30)
    assert made.value.args[0].code() == denied
    assert name not in AdminClient(kafka_config(secure_stack.settings())).list_topics(timeout=10).topics


def test_an_authenticated_principal_without_acls_gets_authorization_failed(secure_stack):
    from infra.kafka import admin_config

    user, password = f"nobody-{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    admin = AdminClient(admin_config(secure_stack.cfg))
    upsert = UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode()
    )
    admin.alter_user_scram_credentials([upsert])[user].result(timeout=30)
    nobody = secure_stack.settings("worker", KAFKA_SASL_USERNAME=user, KAFKA_SASL_PASSWORD=password)
    check_kafka(nobody)  # authenticated ...
    assert secure.IMAGE_TOPIC not in AdminClient(kafka_config(nobody)).list_topics(timeout=10).topics  # sees nothing
    assert _code(_produce(nobody, secure.IMAGE_TOPIC)) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_postgres_only_over_tls_verified_against_the_stack_ca(secure_stack, tmp_path):
    url = secure_stack.cfg.database_url
    psycopg2.connect(url).close()
    plain = url.replace("sslmode=verify-full", "sslmode=disable")
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(plain)
    wrong_ca = url.replace(str(secure_stack.cfg.ca_file), str(tls.other_ca(tmp_path)))
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        psycopg2.connect(wrong_ca)
    wrong_password = secure_stack.cfg.database_url_as("worker", "not-the-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong_password)


def test_s3_only_over_https_verified_against_the_stack_ca(secure_stack, tmp_path, monkeypatch):
    import botocore.exceptions
    import urllib3

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):  # boto3 takes them from the environment
        monkeypatch.setenv(var, secure_stack.cfg.env()[var])

    secure_stack.settings().s3_client().list_buckets()
    plain = secure_stack.cfg.s3_endpoint.replace("https://", "http://")
    with pytest.raises(urllib3.exceptions.ProtocolError):  # the gateway hangs up on plain HTTP
        urllib3.PoolManager(retries=False, timeout=5).request("GET", plain + "/")
    wrong_ca = secure_stack.settings(S3_CA_BUNDLE=str(tls.other_ca(tmp_path)))
    with pytest.raises(botocore.exceptions.SSLError):
        wrong_ca.s3_client().list_buckets()


def _one_line(cmd: list[str], env: dict, secrets: list[str], timeout: float = 90) -> str:
    """Run a command expected to stop on its configuration: exit 2, one line, no secret in it."""
    res = subprocess.run([*cmd], env=env, cwd=REPO, capture_output=True, text=True, input="", timeout=timeout)
    out = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, out[-3000:]
    assert out.count("\n") == 0 and out.startswith("error: "), out[-3000:]
    assert not any(s in out for s in secrets), out
    return out


def test_a_wrong_database_password_or_no_tls_is_one_line_from_every_tool(secure_stack, tmp_path):
    url = secure_stack.cfg.database_url
    wrong = secure_stack.cfg.database_url_as("postgres", "wrong-" + uuid.uuid4().hex)
    no_tls = url.replace("sslmode=verify-full", "sslmode=disable")
    secrets = [*secure_stack.secrets(), wrong.split(":")[2].split("@")[0]]
    (tmp_path / "photos").mkdir()
    commands = (
        ["-m", "db", "migrate"],
        ["-m", "training", "list"],
        ["upload.py", str(tmp_path / "photos")],
        ["-m", "producer"],
        ["-m", "consumer.similar", "some/key.jpg"],
    )
    for cmd in commands:
        line = _one_line([sys.executable, *cmd], secure_stack.env("producer", DATABASE_URL=wrong), secrets)
        assert "PostgreSQL at 127.0.0.1" in line and "password was refused" in line, (cmd, line)
    line = _one_line([sys.executable, "-m", "training", "list"], secure_stack.env(DATABASE_URL=no_tls), secrets)
    assert "accepts only TLS" in line


def test_a_worker_with_a_wrong_ca_or_password_stops_at_once_in_one_line(secure_stack, tmp_path):
    worker = [str(Path(sys.executable).parent / "faust"), "-A", "consumer.app", "worker", "-l", "warn"]
    other = str(tls.other_ca(tmp_path))
    cases = {
        "S3_CA_BUNDLE": (other, "S3 at https://127.0.0.1"),
        "KAFKA_SSL_CAFILE": (other, "over TLS"),
        "AWS_SECRET_ACCESS_KEY": ("wrong-" + uuid.uuid4().hex, "S3 refused the request"),
        "DATABASE_URL": (secure_stack.cfg.database_url_as("worker", "wrong-password"), "password was refused"),
    }
    for var, (value, expected) in cases.items():
        env = secure_stack.env("worker", "worker", **{var: value, "FAUST_DATADIR": str(tmp_path / "faust")})
        line = _one_line(worker, env, secure_stack.secrets(), timeout=60)
        assert expected in line, (var, line)
