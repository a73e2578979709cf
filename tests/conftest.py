"""Shared fixtures, and the one rule that gives every test its tier.

Unit tests need nothing. Tests that ask for `stack` (directly, or through `stack_settings`,
`stack_env`, `migrated`, `db_conn`) get real Kafka, PostgreSQL and S3 (versitygw), started once per
test session (fresh state dir, free ports).

The tier rule (pytest_collection_modifyitems below): a test is marked by what it uses, not by
what its file says.
- `integration`: its fixtures include `stack_libs` (the installed Kafka jars and versitygw, which
  `stack` and every test that starts services of its own use) or `root` (network namespaces);
- `e2e`: it is under tests/e2e/;
- `model`: not integration, and its fixtures include `shared_dir` (../shared's real weights or
  photos).
A test with none of them is a unit test: no service, no root, no ../shared.
"""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path

import pytest

from settings import Settings, get_settings

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
INTEGRATION_FIXTURES = {"stack_libs", "root"}


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        integration = bool(used & INTEGRATION_FIXTURES)
        if Path(str(item.fspath)).resolve().is_relative_to(TESTS / "e2e"):
            item.add_marker(pytest.mark.e2e)
        if integration:
            item.add_marker(pytest.mark.integration)
        elif "shared_dir" in used:
            item.add_marker(pytest.mark.model)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or SHARED_DIR): real weights and labelled photos. Absent = a clear failure."""
    path = Settings().shared_dir
    if not (path / "images" / "dev" / "labels.csv").is_file() or not (path / "models").is_dir():
        pytest.fail(
            f"shared data not found at {path}: set SHARED_DIR to the folder holding "
            "models/squeezenet1_1_imagenet1k.pth and images/dev/labels.csv",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def weights_path(shared_dir: Path) -> Path:
    path = shared_dir / "models" / "squeezenet1_1_imagenet1k.pth"
    if not path.is_file():
        pytest.fail(f"real SqueezeNet weights missing: {path}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def dev_images(shared_dir: Path) -> Path:
    return shared_dir / "images" / "dev"


@pytest.fixture(scope="session")
def dev_batches(dev_images) -> list:
    """The 500 dev photos, preprocessed as the workers do, in batches of 50 (sorted by name)."""
    import torch

    from consumer.images import load_tensor

    paths = sorted(dev_images.glob("*.JPEG"))
    tensors = [load_tensor(p.read_bytes(), 60_000_000) for p in paths]
    return [torch.stack(tensors[i : i + 50]) for i in range(0, len(tensors), 50)]


@pytest.fixture(scope="session")
def stack_libs() -> Path:
    """Where infra/install.sh put the Kafka jars (versitygw beside them, in ../bin): what real services are run from."""
    from infra import stack as stack_mod

    return stack_mod.default_libs_dir()


@pytest.fixture(scope="session")
def root() -> None:
    """Root and iproute2, for hosts in network namespaces (infra/netns.py); CI runs as root."""
    from infra.netns import require_root

    require_root()


@pytest.fixture(scope="session")
def stack(tmp_path_factory, stack_libs):
    """The real local stack, started once per session on free ports and torn down after."""
    from infra import stack as stack_mod

    state = tmp_path_factory.mktemp("stack")
    cfg = stack_mod.load_or_create(state, libs_dir=stack_libs, free_ports=True)
    try:
        stack_mod.up(cfg)
        yield cfg
    finally:
        stack_mod.discard(cfg)


@pytest.fixture(scope="session")
def stack_env(stack) -> dict[str, str]:
    """Environment for subprocesses (workers, CLIs) pointed at the test stack."""
    return {**os.environ, **stack.env()}


@pytest.fixture(scope="session")
def migrated(stack):
    from db.connection import connect
    from db.migrate import migrate

    settings = Settings(database_url=stack.database_url)
    conn = connect(settings)
    migrate(conn)
    conn.close()
    return stack


@pytest.fixture
def stack_settings(migrated, weights_path, monkeypatch, tmp_path) -> Settings:
    """Settings for one test on the whole test stack (started by the first test that asks): the
    real weights, a topic, bucket and consumer group of its own."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **migrated.env(),
        "KAFKA_TOPIC": f"image-keys-{suffix}",
        "S3_BUCKET": f"images-{suffix}",
        "FAUST_APP_ID": f"vs-test-{suffix}",
        "MODEL_WEIGHTS": str(weights_path),
        "KAFKA_DEAD_LETTER_TOPIC": f"dead-letters-{suffix}",
        "SIMILAR_INDEX_DIR": str(tmp_path / "similar-index"),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    yield Settings()
    get_settings.cache_clear()


@pytest.fixture
def db_conn(stack_settings):
    """A connection to the test database, with the pipeline's tables emptied first."""
    from db.connection import connect
    from infra.fleet import PIPELINE_TABLES

    conn = connect(stack_settings)
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(PIPELINE_TABLES)}")
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def coarse_dir(shared_dir, tmp_path_factory):
    """A labelled folder whose categories are not ImageNet's: ../shared/images/coarse.csv maps
    ImageNet classes to eight coarse categories; joined with the dev photos' labels it labels
    240 photos. Symbolic links in a temporary folder: no photo is copied or committed."""
    coarse = {r["class_index"]: r["coarse"] for r in csv.DictReader((shared_dir / "images" / "coarse.csv").open())}
    root = tmp_path_factory.mktemp("coarse")
    dev = shared_dir / "images" / "dev"
    for row in csv.DictReader((dev / "labels.csv").open()):
        category = coarse.get(row["class_index"])
        if category:
            (root / category).mkdir(exist_ok=True)
            os.symlink(dev / row["filename"], root / category / row["filename"])
    return root


class SecureStack:
    """A stack of `python -m infra.stack up --secure`, migrated, with PostgreSQL logins for the
    least-privilege roles (made by the documented `python -m db create-*-login`); `env()` gives a
    process's environment as one Kafka principal and one database login."""

    def __init__(self, cfg) -> None:
        import secrets
        import subprocess
        import sys

        self.cfg = cfg
        self.db_passwords = {login: secrets.token_urlsafe(12) for login in ("worker", "viewer", "trainer")}
        admin = {**os.environ, **cfg.env()}
        subprocess.run([sys.executable, "-m", "db", "migrate"], env=admin, cwd=REPO, check=True, capture_output=True)
        for login, password in self.db_passwords.items():
            subprocess.run(
                [sys.executable, "-m", "db", f"create-{login}-login", login],
                env={**admin, f"{login.upper()}_DB_PASSWORD": password},
                cwd=REPO,
                check=True,
                capture_output=True,
            )

    def env(self, kafka_user: str = "admin", db_login: str | None = None, **extra: str) -> dict[str, str]:
        env = {**os.environ, **self.cfg.env(kafka_user)}
        if db_login:
            env["DATABASE_URL"] = self.cfg.database_url_as(db_login, self.db_passwords[db_login])
        return {**env, **extra}

    def settings(self, kafka_user: str = "admin", db_login: str | None = None, **extra: str) -> Settings:
        env = self.env(kafka_user, db_login, **extra)
        keys = {f.upper() for f in Settings.model_fields}
        return Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k in keys})

    def named_secrets(self) -> dict[str, str]:
        """Every password and secret key of the stack, by name: none may appear in a log or an output."""
        return {
            **{f"Kafka/PostgreSQL {k}": v for k, v in self.cfg.passwords.items()},
            **{f"database login {k}": v for k, v in self.db_passwords.items()},
            "S3 secret key": self.cfg.s3_secret_key,
        }

    def secrets(self) -> list[str]:
        return list(self.named_secrets().values())


@pytest.fixture(scope="session")
def secure_stack(tmp_path_factory, stack_libs):
    """The locked-down stack (TLS, SASL/SCRAM, ACLs, PostgreSQL passwords), once per session."""
    from infra import stack as stack_mod

    cfg = stack_mod.load_or_create(
        tmp_path_factory.mktemp("secure-stack"), libs_dir=stack_libs, free_ports=True, secure=True
    )
    try:
        stack_mod.up(cfg)
        yield SecureStack(cfg)
    finally:
        stack_mod.discard(cfg)
