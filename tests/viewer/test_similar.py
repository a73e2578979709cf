"""Similar images in the viewer, on the real stack: the rows and embeddings of the 200 dev photos
written by the workers' own BatchProcessor (tests/viewer/test_api.py's world), searched by key,
by an uploaded photo, and grouped as near-duplicates; hostile uploads get a clear 4xx."""

import io
import re
import time

import pytest
from PIL import Image

from tests.consumer import images_zoo as zoo
from tests.viewer.conftest import SCRIPT_KEY
from tests.viewer.logins import logged_in
from viewer.app import create_app


def ready(client, path="/api/similar", **params):
    """The answer once the index is built (the first request starts the build: 503 meanwhile)."""
    deadline = time.monotonic() + 120
    while True:
        resp = client.get(path, query_string=params)
        if resp.status_code != 503 or time.monotonic() > deadline:
            return resp
        assert "being built" in resp.get_json()["error"]
        time.sleep(0.2)


def jpeg(data: bytes, quality: int = 60, scale: float = 1.0) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img = img.resize((int(img.width * scale), int(img.height * scale)))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def photo_of(settings, key: str) -> bytes:
    return settings.s3_client().get_object(Bucket=settings.s3_bucket, Key=key)["Body"].read()


def test_an_images_twelve_most_similar_with_their_categories(world):
    settings, _, client = world
    key = "n01530575_brambling.JPEG"
    resp = ready(client, key=key)
    assert resp.status_code == 200, resp.get_json()
    items = resp.get_json()["items"]
    assert len(items) == 12 and key not in [i["image_key"] for i in items]
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert all(i["category"] and 0 < i["confidence"] <= 1 for i in items)
    missing = client.get("/api/similar", query_string={"key": "corrupt.jpg"})  # an error row, no embedding
    assert missing.status_code == 404 and "no embedding" in missing.get_json()["error"]


def test_an_uploaded_copy_of_a_photo_finds_it_first_and_is_not_kept(world):
    settings, conn, client = world
    ready(client, key="n01530575_brambling.JPEG")
    before = table_counts(conn)
    key = "n01677366_common_iguana.JPEG"
    copy = jpeg(photo_of(settings, key), quality=50, scale=0.7)
    resp = client.post("/api/similar", data={"photo": (io.BytesIO(copy), "mine.jpg")})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["items"][0]["image_key"] == key
    page = client.post("/similar", data={"photo": (io.BytesIO(copy), "mine.jpg")})
    assert page.status_code == 200 and key.encode() in page.data
    assert table_counts(conn) == before  # searching wrote nothing


def table_counts(conn) -> dict:
    with conn, conn.cursor() as cur:
        out = {}
        for table in ("image_info", "prediction_results", "prediction_errors", "image_embeddings"):
            cur.execute(f"SELECT count(*) FROM {table}")
            out[table] = cur.fetchone()[0]
        return out


@pytest.mark.parametrize(
    "upload, status, says",
    [
        (b"just some text", 415, "not_an_image"),
        (zoo.png_header_claiming(100_000, 100_000), 413, "too_large"),  # a decompression bomb
        (zoo.truncated_jpeg(), 400, "corrupt"),
        (b"", 400, "no photo"),
    ],
)
def test_a_hostile_upload_is_a_clear_4xx(world, upload, status, says):
    _, _, client = world
    ready(client, key="n01530575_brambling.JPEG")
    resp = client.post("/api/similar", data={"photo": (io.BytesIO(upload), "x.jpg")})
    assert resp.status_code == status and says in resp.get_json()["error"]
    page = client.post("/similar", data={"photo": (io.BytesIO(upload), "x.jpg")})
    assert page.status_code == status and b'id="photo-problem"' in page.data


def test_an_upload_over_max_image_bytes_is_refused_before_it_is_read(world):
    settings, conn, _ = world
    small = logged_in(create_app(settings.model_copy(update={"max_image_bytes": 100_000})), conn)
    resp = small.post("/api/similar", data={"photo": (io.BytesIO(b"\xff" * 300_000), "big.jpg")})
    assert resp.status_code == 413 and "MAX_IMAGE_BYTES" in resp.get_json()["error"]


def test_the_same_photo_under_two_keys_is_the_one_near_duplicate_group(world):
    _, _, client = world
    resp = ready(client, "/api/duplicates", prefix="")
    data = resp.get_json()
    # SCRIPT_KEY holds the bytes of the first dev photo; the 200 dev photos are all different
    assert data["groups"] == 1 and data["duplicates"] == 1 and data["images"] == 201
    assert SCRIPT_KEY in data["members"][0] and len(data["members"][0]) == 2
    assert client.get("/api/duplicates", query_string={"prefix": "n0153"}).get_json()["groups"] == 0
    page = client.get("/duplicates", query_string={"prefix": ""})
    assert (
        page.status_code == 200 and re.search(rb"1 group,\s+1 duplicate<", page.data) and b"&lt;script&gt;" in page.data
    )
