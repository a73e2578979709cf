"""The viewer's Flask app: server-rendered page shells, a JSON API behind them, and images
re-encoded from S3. Every route but the login page needs a session (viewer/auth.py). The
pipeline's tables are only read (read-only database sessions); accounts are written through a
second, small pool."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Optional

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.pool
from flask import Flask, Response, abort, jsonify, render_template, request
from werkzeug.middleware.proxy_fix import ProxyFix

from common.errors import VisionScalingError
from settings import Settings
from viewer import auth, label_routes, models_routes, queries, similar_routes, users_routes
from viewer.jobs import TrainingJobs
from viewer.similar import SimilarSearch
from viewer.thumbnails import ThumbnailError, Thumbnails

log = logging.getLogger(__name__)


class BadRequest(VisionScalingError, ValueError):
    pass


BIGINT_MAX = 2**63 - 1  # PostgreSQL's LIMIT/OFFSET are bigint


def _number(name: str, cast: Callable, default=None, lo=None, hi=None):
    raw = request.args.get(name, "")
    if cast is int and hi is None:
        hi = BIGINT_MAX
    if raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise BadRequest(f"{name} must be between {lo} and {hi}")
    return value


def _filters(model: str) -> queries.Filters:
    return queries.Filters(
        model=model,
        category=request.args.get("category") or None,
        host=request.args.get("host") or None,
        min_confidence=_number("min_confidence", float, None, 0.0, 1.0),
        max_confidence=_number("max_confidence", float, None, 0.0, 1.0),
        search=request.args.get("q") or None,
        include_deleted=request.args.get("deleted") in ("1", "true"),
    )


class Database:
    """A small pool of connections (read-only unless asked); a broken one is dropped, not reused."""

    def __init__(self, dsn: str, size: int = 8, read_only: bool = True):
        self._dsn, self._size = dsn, size
        self._options = "-c statement_timeout=10000" + (" -c default_transaction_read_only=on" if read_only else "")
        self._pool: Optional[psycopg2.pool.ThreadedConnectionPool] = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def connection(self, transaction: bool = True) -> Iterator[psycopg2.extensions.connection]:
        """A pooled connection, in a transaction unless the callee makes its own (db.registry's)."""
        with self._lock:
            if self._pool is None:
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    min(2, self._size),  # kept open between requests (psycopg2 closes those above minconn)
                    self._size,
                    self._dsn,
                    connect_timeout=5,
                    options=self._options,
                )
        conn = self._pool.getconn()
        broken = False
        try:
            with conn if transaction else contextlib.nullcontext():
                yield conn
        except psycopg2.OperationalError:
            broken = True
            raise
        finally:
            self._pool.putconn(conn, close=broken or conn.closed != 0)


def create_app(settings: Settings, kafka_status: Optional[Callable[[], dict]] = None) -> Flask:
    app = Flask(__name__)
    if settings.viewer_proxy_hops:  # behind N proxies: the client's address and scheme are theirs to say
        hops = settings.viewer_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    db = Database(settings.viewer_database_url or settings.database_url)
    # every request checks its session here: as many connections as the server has threads
    accounts_db = Database(settings.viewer_database_url or settings.database_url, read_only=False)
    auth.register(app, settings, accounts_db.connection)
    thumbs = Thumbnails(
        settings.s3_client(),
        settings.s3_bucket,
        settings.max_image_pixels,
        settings.viewer_thumbnail_cache,
        settings.max_image_bytes,
    )
    lag = _cached(kafka_status or _default_kafka_status(settings), seconds=5.0)
    page = {"model": settings.model_name, "refresh_ms": int(settings.viewer_refresh_s * 1000)}

    def model() -> str:
        return request.args.get("model") or settings.model_name

    similar_routes.register(app, SimilarSearch(settings, db.connection), db.connection, page, model, _number)
    users_routes.register(app, accounts_db.connection, page)
    label_routes.register(app, settings, accounts_db.connection, page, _number)
    models_routes.register(app, accounts_db.connection, TrainingJobs(accounts_db.connection))

    @app.errorhandler(BadRequest)
    def bad_request(exc):
        return jsonify(error=str(exc)), 400

    @app.before_request
    def refuse_nul():
        # PostgreSQL text cannot hold NUL: such a parameter can match nothing, and would be a 500
        if any("\x00" in v for vs in request.args.listvalues() for v in vs):
            return jsonify(error="a parameter contains a NUL character"), 400

    @app.errorhandler(psycopg2.errors.UndefinedTable)
    def not_migrated(exc):
        log.warning("database not migrated: %s", str(exc).strip().splitlines()[0])
        return jsonify(error="the database is not migrated: run `python -m db migrate`"), 503

    @app.errorhandler(psycopg2.pool.PoolError)
    def pool_exhausted(exc):
        return jsonify(error="the viewer is busy: try again"), 503

    @app.errorhandler(psycopg2.OperationalError)
    def database_down(exc):
        log.warning("database unavailable: %s", str(exc).strip())  # the details stay in the log
        return jsonify(error="database unavailable"), 503

    @app.get("/")
    def index():
        return render_template("index.html", nav="predictions", **page)

    @app.get("/fleet")
    def fleet():
        return render_template("fleet.html", nav="fleet", **page)

    @app.get("/classes")
    def classes():
        return render_template("classes.html", nav="classes", **page)

    def lookup() -> tuple[str, str, Optional[dict], Optional[dict]]:
        """The requested key's result, else its error row (one of the two, or neither)."""
        key, name = request.args.get("key", ""), model()
        with db.connection() as conn:
            row = queries.get_prediction(conn, key, name)
            return key, name, row, None if row else queries.get_error(conn, key, name)

    @app.get("/image")
    def image():
        key, _, row, error = lookup()
        if row is None and error is None:
            abort(404)
        return render_template("image.html", nav="", key=key, row=row, error=error, **page)

    @app.get("/api/predictions")
    def api_predictions():
        filters = _filters(model())
        limit = _number("limit", int, 48, 1, 500)
        offset = _number("offset", int, 0, 0)
        with db.connection() as conn:
            items, total, floor = queries.list_predictions(conn, filters, limit, offset)
        return jsonify(items=items, total=total, total_is_floor=floor, limit=limit, offset=offset)

    @app.get("/api/prediction")
    def api_prediction():
        key, name, row, error = lookup()
        if row is None and error is None:
            return jsonify(error=f"no result or error for {key!r} and model {name}"), 404
        return jsonify(result=row, error=error)

    @app.get("/api/stats")
    def api_stats():
        minutes = _number("minutes", int, 10, 1, 24 * 60)
        bin_seconds = _number("bin", int, 10, 1, 3600)
        with db.connection() as conn:
            stats = queries.totals(conn, model())
            stats["rates"] = queries.host_rates(conn, model(), minutes, bin_seconds)
        stats["kafka"] = lag()
        return jsonify(stats)

    @app.get("/api/classes")
    def api_classes():
        with db.connection() as conn:
            return jsonify(items=queries.class_histogram(conn, model(), _number("limit", int, 50, 1, 1000)))

    @app.get("/api/errors")
    def api_errors():
        with db.connection() as conn:
            return jsonify(items=queries.recent_errors(conn, model(), _number("limit", int, 50, 1, 1000)))

    @app.get("/models")
    def models_page():
        return render_template("models.html", nav="models", **page)

    @app.get("/api/models")
    def api_models():
        with db.connection() as conn:
            return jsonify(names=queries.models(conn, settings.model_name), versions=queries.model_versions(conn))

    @app.get("/api/hosts")
    def api_hosts():
        with db.connection() as conn:
            return jsonify(items=queries.hostnames(conn, model()))

    @app.get("/thumb")
    def thumb():
        try:
            jpeg = thumbs.get(request.args.get("key", ""), _number("size", int, 160))
        except ThumbnailError as exc:
            return Response(str(exc), status=exc.status, mimetype="text/plain")
        return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/healthz")
    def healthz():
        with db.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        return jsonify(ok=True)

    @app.after_request
    def security_headers(resp: Response) -> Response:
        # Inline scripts are never needed: every script is a static file.
        resp.headers.setdefault(
            "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
        )
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    return app


def _default_kafka_status(settings: Settings) -> Callable[[], dict]:
    def status() -> dict:
        from common.kafka_admin import kafka_status

        return kafka_status(settings, timeout=3.0)

    return status


def _cached(fn: Callable[[], dict], seconds: float) -> Callable[[], dict]:
    """fn's answer, at most `seconds` old; a failure becomes {"error": ...}, not a 500."""
    state = {"at": 0.0, "value": None}
    lock = threading.Lock()

    def get() -> dict:
        with lock:
            if state["value"] is None or time.monotonic() - state["at"] > seconds:
                try:
                    state["value"] = fn()
                except Exception as exc:  # noqa: BLE001 - the page shows why lag is missing
                    state["value"] = {"error": f"Kafka unavailable: {exc}"}
                state["at"] = time.monotonic()
            return state["value"]

    return get
