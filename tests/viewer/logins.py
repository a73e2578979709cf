"""Factories for the viewer's tests: logged-in Flask test clients (a new account of the role
asked for, logged in through the login form, the page's CSRF token sent on every request
after), and registered model versions."""

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


def register_versions(conn, name: str, categories: list[str], versions=(1, 2), metrics=None) -> None:
    """Versions NAME@1.. in the registry as `training fit` would leave them (candidates)."""
    from db import registry

    with conn, conn.cursor() as cur:
        for version in versions:
            registry.next_version(cur, name)
            uri = f"s3://models/{name}/{version}/"
            mv = registry.ModelVersion(
                name, version, "0" * 64, uri, "squeezenet1_1", categories, {}, metrics or {}, "f" * 64
            )
            registry.insert(cur, mv)
