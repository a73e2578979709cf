"""The viewer's HTTP behaviour that needs no services: every route but the public ones refuses
a request without a session, a database that is down is a 503 (a session is checked there),
and the headers that keep user-controlled content inert."""

import pytest

from settings import Settings
from viewer.__main__ import is_loopback, main
from viewer.app import create_app
from viewer.auth import PUBLIC


@pytest.fixture
def app():
    settings = Settings(
        _env_file=None, database_url="postgresql://nobody@127.0.0.1:1/none", s3_endpoint_url="http://127.0.0.1:1"
    )
    return create_app(settings, kafka_status=lambda: {"error": "not asked"})


def routes(app):
    for rule in app.url_map.iter_rules():
        path = rule.rule.replace("<name>", "someone").replace("<int:version>", "1")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, path


def test_every_route_but_the_public_ones_needs_a_session(app):
    client = app.test_client()
    checked = 0
    for endpoint, method, path in routes(app):
        if endpoint in PUBLIC:
            continue
        resp = client.open(path, method=method)
        if path.startswith("/api/") or method != "GET":
            assert resp.status_code == 401, (method, path)
        else:  # a page: to the login page, and back afterwards
            assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next="), (method, path)
        checked += 1
    assert checked >= 20  # the pages, the API, the images, the admin routes
    assert {e for e, _, _ in routes(app)} >= PUBLIC


@pytest.mark.parametrize("path", ["/api/predictions", "/api/stats", "/image?key=a", "/thumb?key=a", "/users"])
def test_a_database_outage_is_a_503_not_a_crash(app, path):
    client = app.test_client()
    client.set_cookie("vs_session", "x" * 43)  # so the session is looked up
    resp = client.get(path)
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "database unavailable"  # no server text, address or user
    assert client.get("/healthz").status_code == 503
    assert client.get("/login").status_code == 503


def test_answers_forbid_inline_scripts_and_sniffing(app):
    resp = app.test_client().get("/api/predictions")
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.5.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.1.2.3", False),
        ("viewer.example.com", False),
    ],
)
def test_loopback_addresses(host, loopback):
    assert is_loopback(host) is loopback


def test_the_viewer_will_not_serve_beyond_loopback_when_it_cannot_check_the_accounts(monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.delenv("VIEWER_DATABASE_URL", raising=False)
    assert main(["--host", "0.0.0.0", "--port", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: not serving on 0.0.0.0: cannot check the accounts") and "\n" not in err
