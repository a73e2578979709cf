"""The viewer's JSON API and pages on the real stack (PostgreSQL, versitygw), over a few hundred
real predictions written by the workers' own BatchProcessor with the real weights."""

import io
import uuid

import pytest
from PIL import Image

from tests.viewer.conftest import PHOTOS, SCRIPT_KEY
from tests.viewer.logins import logged_in, register_versions
from viewer.app import create_app


def query(conn, sql, params=()):
    with conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def test_the_newest_predictions_come_first_with_their_top_k(world):
    settings, conn, client = world
    data = client.get("/api/predictions?limit=10").get_json()
    assert data["total"] == PHOTOS + 1  # the corrupt image has an error row, not a result
    times = [i["time"] for i in data["items"]]
    assert len(times) == 10 and times == sorted(times, reverse=True)
    item = data["items"][0]
    assert len(item["top_k"]) == 5 and item["category"] == item["top_k"][0]["category"]
    assert item["hostname"] == settings.hostname and item["model"] == "squeezenet1_1"


def test_pages_cover_every_row_once(world):
    _, _, client = world
    keys = []
    for offset in range(0, 300, 64):
        keys += [i["image_key"] for i in client.get(f"/api/predictions?limit=64&offset={offset}").get_json()["items"]]
    assert len(keys) == len(set(keys)) == PHOTOS + 1


def test_filters_narrow_the_rows_as_sql_would(world):
    _, conn, client = world
    top = client.get("/api/classes?limit=5").get_json()["items"]
    assert (
        top[0]["count"]
        == query(conn, "SELECT count(*) FROM prediction_results GROUP BY category ORDER BY 1 DESC LIMIT 1")[0][0]
    )
    category = top[0]["category"]
    data = client.get("/api/predictions", query_string={"category": category, "limit": 500}).get_json()
    assert data["total"] == top[0]["count"] and {i["category"] for i in data["items"]} == {category}

    data = client.get("/api/predictions?min_confidence=0.5&max_confidence=0.9&limit=500").get_json()
    expected = query(conn, "SELECT count(*) FROM prediction_results WHERE confidence BETWEEN 0.5 AND 0.9")[0][0]
    assert data["total"] == expected > 0
    assert all(0.5 <= i["confidence"] <= 0.9 for i in data["items"])

    assert client.get("/api/predictions?host=no-such-host").get_json()["total"] == 0
    assert client.get("/api/hosts").get_json()["items"] == [world[0].hostname]


def test_a_count_the_totals_cannot_answer_stops_at_the_cap(world, monkeypatch):
    """Confidence and key-search filters are counted by scanning: past COUNT_CAP the API says
    "more than" instead of scanning 10 M rows; the running totals' counts are never capped."""
    from viewer import queries

    _, _, client = world
    monkeypatch.setattr(queries, "COUNT_CAP", 50)
    data = client.get("/api/predictions?min_confidence=0&limit=10").get_json()
    assert (data["total"], data["total_is_floor"], len(data["items"])) == (50, True, 10)
    data = client.get("/api/predictions?limit=10").get_json()
    assert (data["total"], data["total_is_floor"]) == (PHOTOS + 1, False)


def test_key_search_is_literal_and_case_insensitive(world):
    _, _, client = world
    hits = client.get("/api/predictions", query_string={"q": "<SCRIPT>"}).get_json()
    assert [i["image_key"] for i in hits["items"]] == [SCRIPT_KEY]
    assert client.get("/api/predictions", query_string={"q": "%"}).get_json()["total"] == 0
    assert client.get("/api/predictions", query_string={"q": "_"}).get_json()["total"] > 0  # n01440764_tench…


def test_one_prediction_or_its_error(world):
    _, _, client = world
    ok = client.get("/api/prediction", query_string={"key": SCRIPT_KEY}).get_json()
    assert ok["result"]["image_key"] == SCRIPT_KEY and ok["error"] is None
    bad = client.get("/api/prediction?key=corrupt.jpg").get_json()
    assert bad["result"] is None and bad["error"]["error_type"] == "corrupt"
    assert client.get("/api/prediction?key=never.jpg").status_code == 404


def test_stats_count_hosts_errors_and_rates(world):
    settings, _, client = world
    stats = client.get("/api/stats?minutes=60&bin=60").get_json()
    assert stats["results_total"] == PHOTOS + 1 and stats["errors_by_type"] == {"corrupt": 1}
    assert stats["registered_keys"] == PHOTOS + 2 and stats["keys_without_row"] == 0
    assert stats["hosts"] == [{"hostname": settings.hostname, "last_minute": PHOTOS + 1, "total": PHOTOS + 1}]
    series = stats["rates"]["hosts"][settings.hostname]
    assert round(sum(rate * 60 for _, rate in series)) == PHOTOS + 1
    assert "does not exist" in stats["kafka"]["error"]  # nothing was produced to this test's topic
    from confluent_kafka.admin import AdminClient

    topics = AdminClient(settings.kafka_client_config()).list_topics(timeout=10).topics
    assert settings.kafka_topic not in topics, "asking for the lag must not auto-create the topic"
    errors = client.get("/api/errors").get_json()["items"]
    assert [(e["image_key"], e["error_type"]) for e in errors] == [("corrupt.jpg", "corrupt")]


def test_the_image_page_escapes_the_key(world):
    _, _, client = world
    html = client.get("/image", query_string={"key": SCRIPT_KEY}).get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert "<meter" in html
    error_page = client.get("/image?key=corrupt.jpg").get_data(as_text=True)
    assert "not classified" in error_page and "corrupt" in error_page
    assert client.get("/image?key=never.jpg").status_code == 404


def test_thumbnails_are_jpeg_from_s3_and_cached(world):
    settings, _, client = world
    resp = client.get("/thumb", query_string={"key": SCRIPT_KEY, "size": 160})
    assert resp.status_code == 200 and resp.mimetype == "image/jpeg"
    assert max(Image.open(io.BytesIO(resp.data)).size) == 160
    settings.s3_client().delete_object(Bucket=settings.s3_bucket, Key=SCRIPT_KEY)
    assert client.get("/thumb", query_string={"key": SCRIPT_KEY, "size": 160}).data == resp.data  # cached
    assert client.get("/thumb", query_string={"key": SCRIPT_KEY, "size": 320}).status_code == 404  # not cached
    assert client.get("/thumb?key=corrupt.jpg&size=160").status_code == 422


def test_the_models_api_lists_registered_versions_with_metrics_and_escapes_names(world):
    from db import registry

    settings, conn, client = world
    name = f"odd-{uuid.uuid4().hex[:6]}"
    categories = ["<script>alert(1)</script>", "plain"]
    metrics = {"top1": 0.5, "confusion": [[1, 0], [1, 0]], "categories": categories, "val_images": 2}
    register_versions(conn, name, categories, metrics=metrics)
    registry.set_stage(conn, name, 2, "production")
    registry.set_stage(conn, name, 1, "shadow")
    data = client.get("/api/models").get_json()
    mine = {v["version"]: v for v in data["versions"] if v["name"] == name}
    assert {v: m["stage"] for v, m in mine.items()} == {1: "shadow", 2: "production"}
    assert mine[1]["shadow_agreement"]["images"] == 0 and mine[2]["shadow_agreement"] is None
    assert name in data["names"] and data["names"][0] == settings.model_name
    page = client.get("/models")
    assert page.status_code == 200 and b"<script>alert" not in page.data  # names arrive as JSON, shown as text


def test_rows_of_removed_objects_are_left_out_unless_asked_for(world):
    settings, conn, client = world
    key = query(conn, "SELECT min(image_key) FROM prediction_results WHERE image_key LIKE %s", ("n0%",))[0][0]
    query(conn, "UPDATE prediction_results SET deleted_at = now() WHERE image_key = %s RETURNING 1", (key,))
    try:
        listed = client.get("/api/predictions?limit=500").get_json()
        assert listed["total"] == PHOTOS and key not in {i["image_key"] for i in listed["items"]}
        everything = client.get("/api/predictions?limit=500&deleted=1").get_json()
        (row,) = [i for i in everything["items"] if i["image_key"] == key]
        assert everything["total"] == PHOTOS + 1 and row["deleted_at"] and row["etag"]
    finally:
        query(conn, "UPDATE prediction_results SET deleted_at = NULL WHERE image_key = %s RETURNING 1", (key,))


@pytest.mark.parametrize(
    "query, message",
    [
        ("min_confidence=abc", "min_confidence must be a number"),
        ("max_confidence=1.5", "max_confidence must be between 0.0 and 1.0"),
        ("limit=0", "limit must be between 1 and 500"),
        ("offset=-1", "offset must be between 0"),
        ("offset=9223372036854775808", "offset must be between 0 and 9223372036854775807"),
        ("category=a%00b", "NUL"),
        ("host=%00", "NUL"),
    ],
)
def test_bad_parameters_are_400_with_the_reason(world, query, message):
    resp = world[2].get("/api/predictions?" + query)
    assert resp.status_code == 400 and message in resp.get_json()["error"]


def test_pages_load_their_scripts_from_files_only(world):
    resp = world[2].get("/")
    assert resp.status_code == 200 and "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert b'<script src="/static/viewer.js">' in resp.data and b"<script>" not in resp.data


def test_unreachable_s3_is_a_503_for_images(world):
    settings, conn, _ = world
    app = create_app(settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:1"}), kafka_status=dict)
    client = logged_in(app, conn)
    resp = client.get("/thumb?key=a.jpg&size=160")
    assert resp.status_code == 503 and b"image store is unavailable" in resp.data and b"127.0.0.1" not in resp.data
    assert client.get("/thumb?key=a.jpg&size=77").status_code == 400
