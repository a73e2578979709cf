"""Every request of the viewer passes here: a session stored in PostgreSQL, a role high enough
for the route, and a CSRF token (flask-wtf) on anything that is not a GET.

- Routes need the `viewer` role unless marked with `requires(role)`; only the login page, the
  static files and the health check are public (`PUBLIC`). Unknown: 401 (JSON under /api/,
  a redirect to the login page otherwise); too low a role: 403.
- The session cookie holds a random token (HttpOnly, SameSite=Lax, Secure over HTTPS or with
  VIEWER_SECURE_COOKIES); a new one at every login; logout deletes the row.
- Failed logins are throttled per address and per user name (flask-limiter). So that an
  attacker cannot lock a real user out, a browser that has logged in as that user before
  carries a signed "device" cookie and is exempt from the per-user limit (OWASP's device
  cookies); the per-address limit still applies to it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from urllib.parse import urlsplit

import psycopg2
import psycopg2.pool
from flask import Flask, g, jsonify, redirect, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import BadSignature, URLSafeTimedSerializer

from db import accounts as store
from settings import Settings
from viewer.accounts import at_least

SESSION_COOKIE, DEVICE_COOKIE, FORM_COOKIE = "vs_session", "vs_device", "vs_form"
PUBLIC = {"static", "login", "login_post", "healthz"}
ADDRESS_LIMIT = "20 per minute; 100 per hour"  # failed logins from one address
USER_LIMIT = "5 per minute; 30 per hour"  # failed logins for one name, from browsers it has never used
DEVICE_DAYS = 90


def requires(role: str) -> Callable:
    """Mark a view as needing at least `role` (the default is `viewer`)."""

    def mark(view: Callable) -> Callable:
        view.min_role = role
        return view

    return mark


class _FormSession(SecureCookieSessionInterface):
    """Flask's signed cookie, kept only for flask-wtf's CSRF secret, signed with the key the
    viewers share in PostgreSQL (fetched on first use, so the app starts with the database down)."""

    def __init__(self, secret: Callable[[], bytes], secure: Callable[[], bool]):
        self._secret, self._secure = secret, secure

    def get_signing_serializer(self, app):
        if not app.secret_key:
            try:
                app.secret_key = self._secret()
            except (psycopg2.Error, psycopg2.pool.PoolError):
                return None  # a null session; the request itself answers 503 (or says to migrate)
        return super().get_signing_serializer(app)

    def get_cookie_secure(self, app) -> bool:
        return self._secure()


def register(app: Flask, settings: Settings, connection: Callable) -> None:
    """`connection()` gives a writable connection (context manager) to the accounts tables."""
    app.config.update(
        SESSION_COOKIE_NAME=FORM_COOKIE,
        SESSION_COOKIE_SAMESITE="Lax",
        WTF_CSRF_CHECK_DEFAULT=False,  # checked below, after the session, so no session is a 401
        WTF_CSRF_TIME_LIMIT=None,  # as long as the browser session: a labelling page stays open for hours
    )

    def secret() -> bytes:
        with connection() as conn:
            return store.signing_secret(conn)

    def secure() -> bool:
        return request.is_secure or settings.viewer_secure_cookies

    app.session_interface = _FormSession(secret, secure)
    csrf = CSRFProtect(app)
    limiter = Limiter(get_remote_address, app=app, storage_uri="memory://", headers_enabled=True)
    idle, lifetime = settings.viewer_session_idle_s, settings.viewer_session_max_s

    def devices() -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(app.secret_key, salt="vs-device")

    def login_name() -> str:
        return "user:" + request.form.get("name", "").strip().lower()[:64]

    def known_device() -> bool:
        token = request.cookies.get(DEVICE_COOKIE, "")
        try:
            return "user:" + devices().loads(token, max_age=DEVICE_DAYS * 86400) == login_name()
        except BadSignature:
            return False

    def failed(resp) -> bool:
        return resp.status_code == 401

    @app.before_request
    def check_session_role_and_csrf():
        view = app.view_functions.get(request.endpoint or "")
        g.user = None
        if view is None:  # 404 / 405: Flask answers
            return None
        wants_json = request.path.startswith("/api/") or request.method != "GET"  # else a page
        if request.endpoint not in PUBLIC:
            token = request.cookies.get(SESSION_COOKIE, "")
            if token and len(token) <= 64:
                with connection() as conn:
                    g.user = store.session_user(conn, token, idle, lifetime)
            if g.user is None:
                if wants_json:
                    return jsonify(error="log in first"), 401
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            needed = getattr(view, "min_role", "viewer")
            if not at_least(g.user.role, needed):
                message = f"this needs the {needed} role; you are {g.user.role}"
                if wants_json:
                    return jsonify(error=message), 403
                return render_template("forbidden.html", nav="", message=message, model=settings.model_name), 403
        csrf.protect()  # a no-op for GET and HEAD
        return None

    @app.context_processor
    def current_user():
        return {"user": g.get("user")}

    @app.errorhandler(CSRFError)
    def csrf_refused(exc):
        return jsonify(error=f"{exc.description} Reload the page and try again."), 400

    @app.errorhandler(429)
    def throttled(exc):
        message = f"too many failed logins: wait and try again ({exc.description})"
        if request.endpoint == "login_post":
            return render_template("login.html", nav="", error=message, next=safe_next(), no_accounts=False), 429
        return jsonify(error=message), 429

    def safe_next() -> str:
        target = request.values.get("next", "") or "/"
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
            return "/"
        return target

    @app.get("/login")
    def login():
        with connection() as conn:
            none_yet = store.count_enabled(conn) == 0
        return render_template("login.html", nav="", error=None, next=safe_next(), no_accounts=none_yet)

    @app.post("/login")
    @limiter.limit(ADDRESS_LIMIT, deduct_when=failed)
    @limiter.limit(USER_LIMIT, key_func=login_name, deduct_when=failed, exempt_when=known_device)
    def login_post():
        from viewer.accounts import authenticate

        with connection() as conn:
            user = authenticate(conn, request.form.get("name", ""), request.form.get("password", ""))
            if user is None:
                error = "wrong name or password, or the account is disabled"
                return render_template("login.html", nav="", error=error, next=safe_next(), no_accounts=False), 401
            token = secrets.token_urlsafe(32)
            store.create_session(conn, user.id, token)
            store.delete_expired_sessions(conn, idle, lifetime)
        session.pop("csrf_token", None)  # a new CSRF secret with the new session
        resp = redirect(safe_next())
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Lax", secure=secure())
        resp.set_cookie(
            DEVICE_COOKIE,
            devices().dumps(user.name),
            max_age=DEVICE_DAYS * 86400,
            httponly=True,
            samesite="Lax",
            secure=secure(),
        )
        return resp

    @app.post("/logout")
    def logout():
        with connection() as conn:
            store.delete_session(conn, request.cookies.get(SESSION_COOKIE, ""))
        session.clear()
        resp = redirect(url_for("login"))
        resp.delete_cookie(SESSION_COOKIE)
        return resp
