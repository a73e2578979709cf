"""The viewer's tests share one world per module: real rows and embeddings of the dev photos,
written by the workers' own BatchProcessor on the real stack, and a client logged in as a
`viewer` (tests/viewer/logins.py)."""

import asyncio
import uuid

import pytest

from consumer.batch import BatchProcessor, Message
from consumer.fetch import S3Images
from consumer.serving import load_model_set
from consumer.sink import RowWriter
from db.connection import connect
from db.queries import register_images
from settings import Settings
from tests.consumer import images_zoo as zoo
from tests.viewer.logins import logged_in
from upload import ensure_bucket
from viewer.app import create_app

SCRIPT_KEY = "evil/<script>alert(1)</script>.jpg"
PHOTOS = 200


@pytest.fixture(scope="module")
def world(migrated, weights_path, dev_images, tmp_path_factory):
    """200 classified dev photos, a `<script>` key, a corrupt image: rows as the workers write them."""
    env = migrated.env()
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        settings = Settings(
            _env_file=None,
            s3_bucket=f"viewer-{uuid.uuid4().hex[:8]}",
            model_weights=weights_path,
            kafka_topic=f"viewer-{uuid.uuid4().hex[:8]}",
            torch_threads=2,
            similar_index_dir=tmp_path_factory.mktemp("similar-index"),
        )
        s3 = settings.s3_client()
        ensure_bucket(s3, settings.s3_bucket)
        photos = sorted(dev_images.glob("*.JPEG"))[:PHOTOS]
        objects = {p.name: p.read_bytes() for p in photos}
        objects[SCRIPT_KEY] = photos[0].read_bytes()
        objects["corrupt.jpg"] = zoo.truncated_jpeg()
        for key, data in objects.items():
            s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=data)
        conn = connect(settings)
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE image_info, prediction_results, prediction_errors, image_embeddings")
        register_images(conn, [(k, len(v)) for k, v in objects.items()])
        proc = BatchProcessor(
            settings,
            load_model_set(settings)[0],
            S3Images.from_settings(settings),
            RowWriter(lambda: connect(settings)),
        )
        keys = list(objects)
        for i in range(0, len(keys), 32):
            asyncio.run(proc.process([Message(k.encode(), 0, i + j) for j, k in enumerate(keys[i : i + 32])]))
        proc.close()
        app = create_app(settings)
        yield settings, conn, logged_in(app, conn)
        conn.close()


@pytest.fixture(scope="module")
def site(migrated):
    """(settings, connection, app) on the real stack, for the tests that need no classified photos."""
    with pytest.MonkeyPatch.context() as mp:
        for k, v in migrated.env().items():
            mp.setenv(k, v)
        settings = Settings(_env_file=None)
        conn = connect(settings)
        yield settings, conn, create_app(settings, kafka_status=dict)
        conn.close()
