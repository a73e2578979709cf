"""Similar images in the viewer: by an image's key, by an uploaded photo, and near-duplicate
groups, over the stored embeddings (db/similar.py, db/duplicates.py).

The index is built in a thread of its own the first time it is asked for (a request meanwhile
gets a 503 saying how far it is), then caught up with the table before a search at most every
SIMILAR_REFRESH_S. An uploaded photo is embedded by `python -m consumer.embedding` in a child
process, fed on its standard input and never written anywhere: the viewer's own process never
loads torch, and a hostile upload's decoding (bounded as the workers bound it) cannot take the
viewer's memory with it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import psycopg2

from common.errors import VisionScalingError
from db import embeddings
from db.duplicates import Groups, near_duplicates
from db.queries import answers
from db.similar import SimilarIndex, open_index
from settings import Settings

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parent.parent
EMBED_TIMEOUT_S = 120  # the child's first run builds the ONNX graph
# photo searches embedded at once (each child loads torch: ~0.5 GB); the others wait their turn
_EMBEDDERS = threading.BoundedSemaphore(2)
EMBED_QUEUE_S = 5.0


class Unavailable(VisionScalingError):
    """No search yet: no embeddings, or the index is still being built (`progress`)."""

    def __init__(self, message: str, progress: Optional[dict] = None):
        super().__init__(message)
        self.progress = progress


class PhotoRefused(VisionScalingError):
    """The upload is not a photo the workers would classify (`status`: the HTTP answer)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class SimilarSearch:
    def __init__(self, settings: Settings, connect):
        self.settings, self.connect = settings, connect  # connect(): a context manager, as Database's
        self._index: Optional[SimilarIndex] = None
        self._building: Optional[dict] = None  # {"done", "total"} while the first build runs
        self._failed: Optional[str] = None
        self._lock = threading.Lock()

    def index(self) -> SimilarIndex:
        """The index, caught up; Unavailable while it is first built (the first call starts
        that). When the images have moved to a newer trunk, its index is built meanwhile and
        replaces this one when ready."""
        with self._lock:
            if self._index is None:
                if self._building is None:
                    self._start()
                raise Unavailable("the similar-image index is being built", dict(self._building or {}))
            index = self._index
            if index.newer_trunk and self._building is None:
                self._start(index.newer_trunk)
        if time.monotonic() - index.checked >= self.settings.similar_refresh_s:  # no connection taken else
            with self.connect() as conn:
                index.refresh(conn, self.settings.similar_refresh_s)
        return index

    def _start(self, trunk: Optional[str] = None) -> None:
        if trunk is None:
            with self.connect() as conn:
                trunk = embeddings.newest_trunk(conn)
        if trunk is None:
            raise Unavailable("no image has an embedding yet (the workers store one per image: EMBEDDINGS=true)")
        self._building = {"done": 0, "total": None}
        threading.Thread(target=self._build, args=(trunk,), name="similar-index", daemon=True).start()

    def _build(self, trunk: str) -> None:
        def progress(done: int, total: int) -> None:
            self._building = {"done": done, "total": total}

        try:
            index = open_index(self.settings.similar_index_path, trunk)
            with self.connect() as conn:
                index.refresh(conn, 0, progress)
            with self._lock:
                self._index, self._building = index, None
        except Exception:  # noqa: BLE001 - the next request starts another build
            log.exception("building the similar-image index failed")
            with self._lock:
                self._building = None

    # ------------------------------------------------------------ the three searches

    def by_key(self, key: str, k: int) -> Optional[list]:
        """The k images most like `key`'s, or None when it has no embedding."""
        index = self.index()
        vector = index.vector(key)
        return None if vector is None else index.search(vector, k, exclude=key)

    def by_photo(self, data: bytes, k: int) -> list:
        index = self.index()
        trunk, vector = embed_photo(data, self.settings)
        if trunk != index.trunk:
            raise PhotoRefused(f"this viewer's model ({trunk}) is not the one the images were embedded with", 409)
        return index.search(vector, k)

    def duplicates(self, prefix: str) -> Groups:
        return near_duplicates(self.index(), prefix)


def embed_photo(data: bytes, settings: Settings) -> tuple[str, list[float]]:
    """The upload's (trunk, embedding) from `python -m consumer.embedding`, or PhotoRefused."""
    if not data:
        raise PhotoRefused("no photo was sent")
    if len(data) > settings.max_image_bytes:
        raise PhotoRefused(f"the photo is over MAX_IMAGE_BYTES ({settings.max_image_bytes} bytes)", 413)
    if not _EMBEDDERS.acquire(timeout=EMBED_QUEUE_S):
        raise PhotoRefused("too many photo searches at once: try again in a moment", 503)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "consumer.embedding"],
            input=data,
            capture_output=True,
            timeout=EMBED_TIMEOUT_S,
            cwd=REPO,
        )
    except subprocess.TimeoutExpired as exc:
        raise PhotoRefused("the photo took too long to read", 422) from exc
    finally:
        _EMBEDDERS.release()
    try:
        answer = json.loads(done.stdout.decode() or "{}")
    except ValueError:
        answer = {}
    if "vector" in answer:
        return answer["trunk"], answer["vector"]
    if answer.get("error_type") == "model" or "error" not in answer:
        log.error("consumer.embedding failed (exit %s): %s", done.returncode, done.stderr.decode()[-2000:])
        raise PhotoRefused("the photo could not be embedded here: see the viewer's log", 503)
    status = 413 if answer["error_type"] == "too_large" else 415 if answer["error_type"] == "not_an_image" else 400
    raise PhotoRefused(f"{answer['error_type']}: {answer['error']}", status)


def describe(conn: psycopg2.extensions.connection, found: list, model: str) -> list[dict]:
    """Neighbours as the API answers them: key, score, and `model`'s category and confidence."""
    known = answers(conn, [n.image_key for n in found], model)
    out = []
    for n in found:
        category, confidence = known.get(n.image_key, (None, None))
        out.append({**n.as_dict(), "category": category, "confidence": confidence})
    return out
