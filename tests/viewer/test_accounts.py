"""Accounts, sessions, CSRF, roles and login throttling on the real PostgreSQL, through the
viewer's own routes (Flask's test client): what an attacker would try, one test each."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import psycopg2
import pytest
from psycopg2.extensions import make_dsn, parse_dsn

from db.migrate import migrate
from db.roles import create_viewer_login
from tests.viewer.logins import PASSWORD, csrf_of, log_in, logged_in, new_user
from viewer.app import create_app

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Every route that accepts a POST, and the least role it needs (None: public). A new POST
# route fails test_every_post_route_is_in_the_table until it is added here and checked below.
POSTS = {
    "login_post": None,
    "logout": "viewer",
    "api_similar_photo": "viewer",  # a search: changes nothing, still CSRF-checked
    "similar_page": "viewer",
    "api_create_user": "admin",
    "api_change_user": "admin",
    "api_create_project": "admin",
    "api_label": "labeller",
    "api_queue": "labeller",  # leases images
    "api_train": "admin",
    "api_set_stage": "admin",
}
LOWER = {"viewer": None, "labeller": "viewer", "admin": "labeller"}


def post_paths(app):
    for rule in app.url_map.iter_rules():
        if "POST" in rule.methods:
            yield rule.endpoint, rule.rule.replace("<name>", "someone").replace("<int:version>", "1")


def test_every_post_route_is_in_the_table(site):
    assert {endpoint for endpoint, _ in post_paths(site[2])} == set(POSTS)


def test_every_state_change_needs_a_session_a_csrf_token_and_the_role(site):
    _, conn, app = site
    anonymous = app.test_client()
    for endpoint, path in post_paths(app):
        needed = POSTS[endpoint]
        if needed is None:
            continue
        assert anonymous.post(path, json={}).status_code == 401, path
        client = logged_in(app, conn, needed)
        del client.environ_base["HTTP_X_CSRFTOKEN"]
        resp = client.post(path, json={})
        assert resp.status_code == 400 and "CSRF token is missing" in resp.get_json()["error"], path
        client.environ_base["HTTP_X_CSRFTOKEN"] = "forged." + "x" * 40
        assert client.post(path, json={}).status_code == 400, path
        if LOWER[needed]:
            low = logged_in(app, conn, LOWER[needed])
            resp = low.post(path, json={"name": "x", "role": "admin"})
            assert resp.status_code == 403 and f"needs the {needed} role" in resp.get_json()["error"], path
    assert app.test_client().post("/login", data={"name": "a", "password": "b"}).status_code == 400  # no token


def test_logout_disabling_and_a_new_role_end_the_session_at_once(site):
    _, conn, app = site
    admin = logged_in(app, conn, "admin")
    for change in ("logout", {"disabled": True}, {"role": "labeller"}):
        user = logged_in(app, conn, "viewer")
        stolen = user.get_cookie("vs_session").value
        assert user.get("/api/predictions").status_code == 200
        if change == "logout":
            assert user.post("/logout").status_code == 302
        else:
            assert admin.post(f"/api/users/{user.user_name}", json=change).status_code == 200
        replay = app.test_client()
        replay.set_cookie("vs_session", stolen)
        assert replay.get("/api/predictions").status_code == 401, change
        assert replay.get("/").headers["Location"].startswith("/login"), change
    users = {u["name"]: u for u in admin.get("/api/users").get_json()["users"]}
    actions = admin.get("/api/users").get_json()["actions"]
    assert any(a["action"] == "disable" and a["actor"] == admin.user_name for a in actions)
    assert any(a["action"] == "set role" and a["detail"] == {"role": "labeller"} for a in actions)
    assert sum(u["disabled"] for u in users.values()) >= 1


def test_a_login_makes_a_new_session_and_ignores_one_planted_before(site):
    _, conn, app = site
    name = new_user(conn, "viewer")
    client = app.test_client()
    client.set_cookie("vs_session", "planted-by-an-attacker-0123456789012345678")
    assert client.get("/api/predictions").status_code == 401
    log_in(client, name)
    first = client.get_cookie("vs_session").value
    log_in(client, name)
    second = client.get_cookie("vs_session").value
    assert len({first, second, "planted-by-an-attacker-0123456789012345678"}) == 3
    with conn, conn.cursor() as cur:  # only a hash of the token is stored
        cur.execute("SELECT count(*) FROM viewer_sessions WHERE token_hash = %s::bytea", (first.encode(),))
        assert cur.fetchone()[0] == 0


def test_cookies_are_httponly_samesite_and_secure_over_https(site):
    _, conn, app = site
    name = new_user(conn, "viewer")
    for base, secure in (("http://localhost", False), ("https://localhost", True)):
        client = app.test_client()
        resp = log_in(client, name, base_url=base, headers={"Referer": base + "/login"})  # checked over HTTPS
        cookies = {c.split("=", 1)[0]: c for c in resp.headers.getlist("Set-Cookie")}
        for cookie in (cookies["vs_session"], cookies["vs_device"]):
            assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and ("Secure" in cookie) is secure


def test_failed_logins_are_throttled_per_address_and_per_name_without_locking_the_user_out(site):
    settings, conn, _ = site
    app = create_app(settings, kafka_status=dict)  # limits of its own
    victim = new_user(conn, "labeller")
    her_browser = app.test_client()
    assert log_in(her_browser, victim).status_code == 302  # she has logged in from here before

    attacker = app.test_client()
    for i in range(5):  # from five addresses: the per-address limit never trips
        address = {"REMOTE_ADDR": f"10.0.0.{i + 1}"}
        assert log_in(attacker, victim, "guess-" + str(i), environ_base=address).status_code == 401
    blocked = log_in(attacker, victim, PASSWORD, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert blocked.status_code == 429 and b"too many failed logins" in blocked.data  # even the right password
    assert log_in(her_browser, victim).status_code == 302  # her device cookie: not locked out

    other = new_user(conn, "viewer")
    for i in range(20):  # one address, many names
        assert log_in(attacker, f"nobody-{i}", "guess", environ_base={"REMOTE_ADDR": "10.0.1.1"}).status_code == 401
    assert log_in(attacker, other, PASSWORD, environ_base={"REMOTE_ADDR": "10.0.1.1"}).status_code == 429
    assert log_in(app.test_client(), other, PASSWORD, environ_base={"REMOTE_ADDR": "10.0.1.2"}).status_code == 302


def test_a_disabled_user_or_a_wrong_password_cannot_log_in_and_the_answer_says_neither(site):
    _, conn, app = site
    admin = logged_in(app, conn, "admin")
    name = new_user(conn, "viewer")
    wrong = log_in(app.test_client(), name, "not the password")
    admin.post(f"/api/users/{name}", json={"disabled": True})
    disabled = log_in(app.test_client(), name)
    unknown = log_in(app.test_client(), "no-such-user", PASSWORD)
    assert wrong.status_code == disabled.status_code == unknown.status_code == 401
    said = {
        re.search(r'id="login-problem">([^<]*)<', r.get_data(as_text=True)).group(1) for r in (wrong, disabled, unknown)
    }
    assert said == {"wrong name or password, or the account is disabled"}
    admin.post(f"/api/users/{name}", json={"disabled": False})
    assert log_in(app.test_client(), name).status_code == 302


def test_admins_create_users_whose_password_is_shown_once_and_roles_gate_the_pages(site):
    _, conn, app = site
    admin = logged_in(app, conn, "admin")
    name = f"lab-{uuid.uuid4().hex[:6]}"
    made = admin.post("/api/users", json={"name": name.upper(), "role": "labeller"})
    assert made.status_code == 201 and made.get_json()["name"] == name
    password = made.get_json()["password"]
    assert password not in admin.get("/api/users").get_data(as_text=True)
    assert (
        admin.post("/api/users", json={"name": name, "role": "viewer"}).get_json()["error"].endswith("exists already")
    )
    assert admin.post("/api/users", json={"name": "<b>x</b>", "role": "viewer"}).status_code == 400
    assert admin.post("/api/users", json={"name": "ok-name", "role": "root"}).status_code == 400
    assert admin.post("/api/users", data="not json").status_code == 400
    assert admin.post(f"/api/users/{admin.user_name}", json={"role": "viewer"}).status_code == 400  # not oneself
    labeller = app.test_client()
    assert log_in(labeller, name, password).status_code == 302
    assert labeller.get("/users").status_code == 403 and labeller.get("/api/users").status_code == 403
    page = labeller.get("/")
    assert page.status_code == 200 and b'href="/users"' not in page.data and name.encode() in page.data
    assert b'href="/users"' in admin.get("/").data


def test_the_login_page_sends_you_back_where_you_were_and_never_elsewhere(site):
    _, conn, app = site
    name = new_user(conn, "viewer")
    assert app.test_client().get("/classes?x=1").headers["Location"] == "/login?next=/classes?x%3D1"
    for target, lands in (
        ("/classes?x=1", "/classes?x=1"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        client = app.test_client()
        token = csrf_of(client.get("/login").get_data(as_text=True))
        resp = client.post("/login", data={"name": name, "password": PASSWORD, "csrf_token": token, "next": target})
        assert resp.headers["Location"] == lands, target


def test_the_least_privileged_viewer_login_runs_the_accounts(site):
    """VIEWER_DATABASE_URL as a vs_viewer login: logging in and managing users work, and the
    pipeline's tables stay read-only to it."""
    settings, conn, _ = site
    login, secret = f"viewer_{uuid.uuid4().hex[:6]}", uuid.uuid4().hex
    create_viewer_login(conn, login, secret)
    dsn = make_dsn(**{**parse_dsn(settings.database_url), "user": login, "password": secret})
    app = create_app(settings.model_copy(update={"viewer_database_url": dsn}), kafka_status=dict)
    admin = logged_in(app, conn, "admin")
    assert admin.post("/api/users", json={"name": f"via-{login}", "role": "viewer"}).status_code == 201
    assert admin.get("/api/predictions").status_code == 200
    limited = psycopg2.connect(dsn)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), limited, limited.cursor() as cur:
            cur.execute("DELETE FROM prediction_results")
    finally:
        limited.close()


def test_the_command_line_manages_accounts_and_never_shows_a_password_it_was_given(site, migrated):
    env = {**os.environ, **migrated.env(), "VIEWER_PASSWORD": "a secret nobody should see"}
    name = f"cli-{uuid.uuid4().hex[:6]}"

    def viewer(*args, **extra):
        return subprocess.run(
            [sys.executable, "-m", "viewer", *args],
            env={**env, **extra},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    made = viewer("create-user", name, "--role", "labeller")
    assert made.returncode == 0 and made.stdout.strip() == f"created {name} (labeller)"
    assert "a secret nobody should see" not in made.stdout + made.stderr
    assert log_in(site[2].test_client(), name, "a secret nobody should see").status_code == 302
    generated = viewer("set-password", name, "--generate")
    password = generated.stdout.strip().splitlines()[-1].split(": ")[1]
    assert log_in(site[2].test_client(), name, password).status_code == 302
    for args, says, code in (
        (("create-user", name, "--role", "viewer"), "exists already", 1),
        (("create-user", "bad name", "--role", "viewer"), "is not allowed", 1),
        (("set-role", "nobody-at-all", "admin"), "no user 'nobody-at-all'", 1),
        (("create-user", "short-pw", "--role", "viewer"), "at least 8 characters", 1),
    ):
        done = viewer(*args, VIEWER_PASSWORD="x" if "short-pw" in args else env["VIEWER_PASSWORD"])
        assert done.returncode == code and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    no_password = viewer("create-user", "quiet-one", "--role", "viewer", VIEWER_PASSWORD="")
    assert no_password.returncode == 1 and "set VIEWER_PASSWORD, use --generate" in no_password.stderr
    assert viewer("disable", name).stdout.strip() == f"{name} disabled"
    assert f"{name}\tlabeller\tdisabled" in viewer("users").stdout
    down = viewer("users", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert down.returncode == 2 and down.stderr.startswith("error: PostgreSQL:") and "Traceback" not in down.stderr
    with site[1], site[1].cursor() as cur:
        cur.execute("SELECT actor, action FROM admin_actions WHERE target = %s ORDER BY id", (name,))
        assert [a for _, a in cur.fetchall()] == ["create user", "set password", "disable"]
        cur.execute("SELECT count(*) FROM admin_actions WHERE detail::text LIKE '%%secret nobody%%'")
        assert cur.fetchone()[0] == 0


def test_without_accounts_the_viewer_serves_only_on_loopback(site):
    """A database of its own, migrated, with no account: the viewer refuses 0.0.0.0."""
    settings, conn, _ = site
    dbname = f"noaccounts_{uuid.uuid4().hex[:6]}"
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {dbname}")
    conn.autocommit = False
    dsn = make_dsn(**{**parse_dsn(settings.database_url), "dbname": dbname})
    fresh = psycopg2.connect(dsn)
    migrate(fresh)
    fresh.close()
    env = {**os.environ, "DATABASE_URL": dsn, "VIEWER_DATABASE_URL": ""}
    env.pop("VIEWER_DATABASE_URL")
    done = subprocess.run(
        [sys.executable, "-m", "viewer", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: not serving on 0.0.0.0: no accounts yet: create one with "
        "`python -m viewer create-user NAME --role admin`"
    )
    app = create_app(settings.model_copy(update={"database_url": dsn, "viewer_database_url": None}), kafka_status=dict)
    assert b'id="no-accounts"' in app.test_client().get("/login").data

    # what infra/demo.sh and a deployment's migrate job run: the first admin, once
    first = [
        sys.executable,
        "-m",
        "viewer",
        "create-user",
        "admin",
        "--role",
        "admin",
        "--generate",
        "--if-no-accounts",
    ]
    made = subprocess.run(first, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert made.returncode == 0 and made.stdout.startswith("created admin (admin)\npassword (shown once): ")
    password = made.stdout.strip().rsplit(": ", 1)[1]
    assert log_in(app.test_client(), "admin", password).status_code == 302
    again = subprocess.run(first, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == "accounts exist already: admin not created"
    from viewer.__main__ import accounts_ready

    assert accounts_ready(settings.model_copy(update={"database_url": dsn, "viewer_database_url": None})) is None


def test_the_last_enabled_admin_cannot_be_demoted_or_disabled(site):
    _, conn, app = site
    with conn, conn.cursor() as cur:  # this test's admins only
        cur.execute("UPDATE viewer_users SET disabled_at = now() WHERE role = 'admin' AND disabled_at IS NULL")
    first, second = new_user(conn, "admin"), new_user(conn, "admin")
    as_first = logged_in(app, conn, name=first)
    assert as_first.post(f"/api/users/{second}", json={"disabled": True}).status_code == 200
    from viewer.accounts import AccountError, change_user

    with pytest.raises(AccountError, match="last enabled admin"), conn:
        change_user(conn, "cli:test", first, role="viewer")
    with pytest.raises(AccountError, match="last enabled admin"), conn:
        change_user(conn, "cli:test", first, disabled=True)
    with conn:
        change_user(conn, "cli:test", second, disabled=False)
        change_user(conn, "cli:test", first, role="labeller")  # another admin exists now


def test_behind_a_proxy_failed_logins_count_per_client_not_per_proxy(site):
    settings, conn, _ = site
    app = create_app(settings.model_copy(update={"viewer_proxy_hops": 1}), kafka_status=dict)
    proxy = {"REMOTE_ADDR": "10.9.9.9"}
    for i in range(20):  # one client, through the proxy
        forwarded = {"X-Forwarded-For": "203.0.113.7"}
        resp = log_in(app.test_client(), f"nobody-{i}", "guess", environ_base=proxy, headers=forwarded)
        assert resp.status_code == 401
    name = new_user(conn, "viewer")
    other = log_in(app.test_client(), name, environ_base=proxy, headers={"X-Forwarded-For": "198.51.100.2"})
    assert other.status_code == 302  # another client behind the same proxy is not throttled
    same = log_in(app.test_client(), name, environ_base=proxy, headers={"X-Forwarded-For": "203.0.113.7"})
    assert same.status_code == 429
