"""The viewer's similar-image pages and API (viewer/similar.py does the work):

- `GET /api/similar?key=K&k=12`: the images most like K's;
- `POST /api/similar` with a `photo` file (multipart): the images most like the photo;
- `GET /similar`, `POST /similar`: the search-by-photo form and its results;
- `GET /duplicates?prefix=P`, `GET /api/duplicates?prefix=P`: near-duplicate groups.

Answers: 404 for a key without an embedding, 413/415/400 for an upload that is too large, not
an image, or a bomb (with the reason), 503 while the index is first built (with its progress).
Searching changes nothing: no route here writes.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge

from viewer.similar import PhotoRefused, SimilarSearch, Unavailable, describe

DEFAULT_K = 12


def register(app: Flask, search: SimilarSearch, connection: Callable, page: dict, model: Callable[[], str], number):
    settings = search.settings
    # an upload larger than a photo the workers would read is refused before it is read
    app.config["MAX_CONTENT_LENGTH"] = settings.max_image_bytes + 64 * 1024

    def answer(found) -> list[dict]:
        with connection() as conn:
            return describe(conn, found, model())

    def photo_search() -> list[dict]:
        upload = request.files.get("photo")
        data = upload.read(settings.max_image_bytes + 1) if upload else b""
        return answer(search.by_photo(data, number("k", int, DEFAULT_K, 1, 100)))

    @app.errorhandler(Unavailable)
    def unavailable(exc: Unavailable):
        return jsonify(error=str(exc), progress=exc.progress), 503

    @app.errorhandler(PhotoRefused)
    def refused(exc: PhotoRefused):
        return jsonify(error=str(exc)), exc.status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc):
        return jsonify(error=f"the upload is over MAX_IMAGE_BYTES ({settings.max_image_bytes} bytes)"), 413

    @app.get("/api/similar")
    def api_similar():
        key = request.args.get("key", "")
        found = search.by_key(key, number("k", int, DEFAULT_K, 1, 100))
        if found is None:
            return jsonify(error=f"{key!r} has no embedding: not classified yet, or removed"), 404
        return jsonify(key=key, items=answer(found))

    @app.post("/api/similar")
    def api_similar_photo():
        return jsonify(items=photo_search())

    @app.route("/similar", methods=["GET", "POST"])
    def similar_page():
        items, problem, status = None, None, 200
        if request.method == "POST":
            try:
                items = photo_search()
            except PhotoRefused as exc:
                problem, status = str(exc), exc.status
            except Unavailable as exc:
                problem, status = str(exc), 503
        return render_template("similar.html", nav="similar", items=items, problem=problem, **page), status

    @app.get("/api/duplicates")
    def api_duplicates():
        return jsonify(search.duplicates(request.args.get("prefix", "")).as_dict())

    @app.get("/duplicates")
    def duplicates_page():
        prefix = request.args.get("prefix")
        groups, problem, status = None, None, 200
        if prefix is not None:
            try:
                groups = search.duplicates(prefix)
            except Unavailable as exc:
                problem, status = str(exc), 503
        html = render_template(
            "duplicates.html", nav="duplicates", prefix=prefix or "", groups=groups, problem=problem, **page
        )
        return html, status
