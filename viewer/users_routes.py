"""The Users page (admins only): create a user (the password is generated and shown once),
change a role, disable and re-enable; every change is recorded and listed beside.

- `GET /users`, `GET /api/users`: users and the recent admin actions;
- `POST /api/users` `{"name", "role"}`: a new user, answered with its one-time password;
- `POST /api/users/NAME` `{"role"}` or `{"disabled": true|false}`: a change; the user's
  sessions end at once. An admin changes their own account from the command line only, so a
  slip of the mouse cannot lock the last admin out.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, g, jsonify, render_template, request

from db import accounts as store
from viewer.accounts import AccountError, change_user, create_user, generate_password
from viewer.auth import requires


def register(app: Flask, connection: Callable, page: dict) -> None:
    @app.errorhandler(AccountError)
    def refused(exc: AccountError):
        return jsonify(error=str(exc)), 400

    def body() -> dict:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise AccountError("send a JSON object")
        return data

    def text(data: dict, field: str) -> str:
        value = data.get(field, "")
        if not isinstance(value, str):
            raise AccountError(f"{field} must be a string")
        return value

    @app.get("/users")
    @requires("admin")
    def users_page():
        return render_template("users.html", nav="users", **page)

    @app.get("/api/users")
    @requires("admin")
    def api_users():
        with connection() as conn:
            return jsonify(users=store.list_users(conn), actions=store.recent_actions(conn))

    @app.post("/api/users")
    @requires("admin")
    def api_create_user():
        data = body()
        password = generate_password()
        with connection() as conn:
            name = create_user(conn, g.user.name, text(data, "name"), text(data, "role"), password)
        return jsonify(name=name, password=password), 201

    @app.post("/api/users/<name>")
    @requires("admin")
    def api_change_user(name: str):
        data = body()
        if name.strip().lower() == g.user.name:
            raise AccountError("change your own account with `python -m viewer set-role|disable` instead")
        disabled = data.get("disabled")
        if disabled is not None and not isinstance(disabled, bool):
            raise AccountError("disabled must be true or false")
        role = text(data, "role") if "role" in data else None
        with connection() as conn:
            change_user(conn, g.user.name, name, role=role, disabled=disabled)
        return jsonify(ok=True)
