"""Shared fixtures. Unit tests need nothing; integration tests ask for `stack`, which starts
real Kafka, PostgreSQL and s3proxy once per test session (fresh state dir, free ports)."""

from __future__ import annotations

import csv
import os
import uuid
from pathlib import Path

import pytest

from settings import Settings, get_settings

REPO = Path(__file__).resolve().parent.parent


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
def stack(tmp_path_factory):
    """The real local stack, started once per session on free ports and torn down after."""
    from infra import stack as stack_mod

    state = tmp_path_factory.mktemp("stack")
    cfg = stack_mod.load_or_create(state, libs_dir=stack_mod.default_libs_dir(), free_ports=True)
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
def settings(migrated, weights_path, monkeypatch) -> Settings:
    """Settings for one test: the test stack, the real weights, a topic and bucket of its own."""
    suffix = uuid.uuid4().hex[:8]
    env = {
        **migrated.env(),
        "KAFKA_TOPIC": f"image-keys-{suffix}",
        "S3_BUCKET": f"images-{suffix}",
        "FAUST_APP_ID": f"vs-test-{suffix}",
        "MODEL_WEIGHTS": str(weights_path),
        "KAFKA_DEAD_LETTER_TOPIC": f"dead-letters-{suffix}",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    get_settings.cache_clear()
    yield Settings()
    get_settings.cache_clear()


@pytest.fixture
def db_conn(settings):
    """A connection to the test database, with the pipeline's tables emptied first."""
    from db.connection import connect

    conn = connect(settings)
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE image_info, prediction_results, prediction_errors")
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
