"""The viewer's HTTP behaviour that needs no services: bad parameters, a database that is
down, and the headers that keep user-controlled content inert."""

import pytest

from settings import Settings
from viewer.app import create_app


@pytest.fixture
def client():
    settings = Settings(
        _env_file=None, database_url="postgresql://nobody@127.0.0.1:1/none", s3_endpoint_url="http://127.0.0.1:1"
    )
    app = create_app(settings, kafka_status=lambda: {"error": "not asked"})
    return app.test_client()


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
def test_bad_parameters_are_400_with_the_reason(client, query, message):
    resp = client.get("/api/predictions?" + query)
    assert resp.status_code == 400 and message in resp.get_json()["error"]


@pytest.mark.parametrize("path", ["/api/predictions", "/api/stats", "/healthz", "/image?key=a"])
def test_a_database_outage_is_a_503_not_a_crash(client, path):
    resp = client.get(path)
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "database unavailable"  # no server text, address or user


def test_pages_forbid_inline_scripts(client):
    resp = client.get("/")
    assert resp.status_code == 200
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert b'<script src="/static/viewer.js">' in resp.data


def test_unreachable_s3_is_a_503_for_images(client):
    resp = client.get("/thumb?key=a.jpg&size=160")
    assert resp.status_code == 503 and b"image store is unavailable" in resp.data and b"127.0.0.1" not in resp.data
    assert client.get("/thumb?key=a.jpg&size=77").status_code == 400
