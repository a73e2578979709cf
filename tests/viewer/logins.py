"""Logged-in Flask test clients for the viewer's tests: a new account of the role asked for,
logged in through the login form, with the page's CSRF token sent on every request after."""

from __future__ import annotations

import re
import uuid

from viewer.accounts import create_user

PASSWORD = "a long enough test password"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf[-_]token" (?:value|content)="([^"]+)"', html)
    assert found, "the page has no CSRF token"
    return found.group(1)


def new_user(conn, role: str) -> str:
    with conn:
        return create_user(conn, "tests", f"{role}-{uuid.uuid4().hex[:8]}", role, PASSWORD)


def log_in(client, name: str, password: str = PASSWORD, **kwargs):
    token = csrf_of(client.get("/login", **kwargs).get_data(as_text=True))
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token}, **kwargs)


def logged_in(app, conn, role: str = "viewer", name: str | None = None):
    client = app.test_client()
    name = name or new_user(conn, role)
    resp = log_in(client, name)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    client.environ_base["HTTP_X_CSRFTOKEN"] = csrf_of(client.get("/similar").get_data(as_text=True))
    client.user_name = name
    return client
