"""Similar-image search over the stored embeddings (db/embeddings.py) of one trunk.

The index (faiss, inner product on unit vectors = cosine, vectors stored as float16): exact
search up to EXACT_UP_TO images, then an inverted-file index (IVF: the vectors split into
~2·sqrt(N) clusters, a search scans the NPROBE nearest clusters). Exact search at a million
vectors misses the issue's latency goal; the IVF keeps recall@10 above 0.95 well within it, as
measured by benchmarks/similar_search.py (figures in docs/similar.md). usearch's HNSW was the first
choice: its wheel crashes ONNX Runtime's session creation when imported first (a segfault,
seen here), and faiss's HNSW cannot remove a vector.

Where it lives: in the memory of the process that searches (the viewer, the command line),
and on disk under SIMILAR_INDEX_DIR/<trunk>/, so that a restart does not read the whole table.
How it catches up: before a search, at most every SIMILAR_REFRESH_S, it reads the rows
written since the snapshot it last read (db.embeddings.changes: new, replaced and removed
images) and saves itself when anything changed. It is rebuilt from the table when it is lost
(no folder, or files that do not load), when it outgrows exact search, and when it has grown
to 4 times the size its clusters were trained on; a progress bar shows on a terminal.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import faiss
import numpy as np
import psycopg2.extensions

from db import embeddings
from db.vector_index import TRAIN_PER_CLUSTER, clusters_for, exact_index, gather, ivf_index

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (rows read, rows to read)
EXACT_UP_TO = 50_000  # exact search below this many images (benchmarks/similar_search.py)
NEAR_DUPLICATE = 0.85  # cosine from which two images are the same photo (benchmarks/near_duplicates.py)
SAVE_EVERY_S = 60.0  # a changed index is saved at most this often (a rebuild at once)
REGROW = 4  # retrain the clusters when the index has grown this many times since
_FORMAT = 2


@dataclass(frozen=True)
class Neighbour:
    image_key: str
    score: float  # cosine similarity, 1 = the same vector

    def as_dict(self) -> dict:
        return {"image_key": self.image_key, "score": round(self.score, 4)}


class SimilarIndex:
    """One trunk's vectors, searchable by vector or by key. Thread-safe (one lock: a catch-up
    and a search never run at once in one process)."""

    def __init__(self, folder: Path, trunk: str):
        self.folder, self.trunk = folder, trunk
        self.index = exact_index()
        self.trained_on = 0  # images the IVF's clusters were trained on; 0: exact search
        self.ids: dict[str, int] = {}
        self.keys: list[Optional[str]] = []  # id -> key (None: freed)
        self.since: Optional[int] = None  # db.embeddings.changes' xmin of the last read
        self.database: Optional[str] = None  # db.embeddings.database_identity of `since`
        self.checked = 0.0  # monotonic time of the last catch-up
        self.saved = 0.0  # monotonic time of the last save
        self.dirty = False  # changed since the last save
        self.newer_trunk: Optional[str] = None  # images are now embedded by this trunk: time to move on
        self._lock = threading.RLock()

    # ------------------------------------------------------------ keeping up with the table

    def catch_up(self, conn: psycopg2.extensions.connection, progress: Optional[Progress] = None) -> int:
        """Apply the rows written since the last read (all of them the first time); returns
        how many rows were read. `progress(done, total)` after each page."""
        with self._lock:
            self.checked = time.monotonic()
            identity = embeddings.database_identity(conn)
            if identity != self.database:
                if self.database is not None:
                    log.warning("similar-image index of %s was made on another database: rebuilding", self.trunk)
                self.database, self.since = identity, None
            if self.since is None:
                return self._rebuild(conn, progress)
            pages, total, xmin = embeddings.changes(conn, self.trunk, self.since)
            done = 0
            for page in pages:
                self._apply(page)
                done += len(page.keys)
                if progress:
                    progress(done, total)
            self.since = xmin
            n = len(self.ids)
            if n > EXACT_UP_TO and (not self.trained_on or n > REGROW * self.trained_on):
                log.info("similar-image index of %s: %d images, retraining its clusters", self.trunk, n)
                done += self._rebuild(conn, progress)
            return done

    def _rebuild(self, conn: psycopg2.extensions.connection, progress: Optional[Progress]) -> int:
        """A new index from the whole table: read it (kept as float16), train the clusters on
        a sample when it is too large for exact search, add everything."""
        pages, total, xmin = embeddings.changes(conn, self.trunk, None)
        keys: list[str] = []
        parts: list[np.ndarray] = []
        done = 0
        for page in pages:
            kept = [i for i, removed in enumerate(page.removed) if not removed]
            keys += [page.keys[i] for i in kept]
            parts.append(page.vectors[kept].astype(np.float16))
            done += len(page.keys)
            if progress:
                progress(done, total)
        n = len(keys)
        if n > EXACT_UP_TO:
            clusters = clusters_for(n)
            pick = np.sort(np.random.default_rng(0).choice(n, min(n, TRAIN_PER_CLUSTER * clusters), replace=False))
            sample = gather(parts, pick)
            index, trained_on = ivf_index(sample.astype(np.float32), clusters), n
        else:
            index, trained_on = exact_index(), 0
        start = 0
        for part in parts:
            if len(part):
                index.add_with_ids(part.astype(np.float32), np.arange(start, start + len(part), dtype=np.int64))
            start += len(part)
        self.index, self.trained_on, self.keys = index, trained_on, keys
        self.ids = {k: i for i, k in enumerate(keys)}
        self.since, self.dirty, self.saved = xmin, True, 0.0  # a rebuild is saved at once
        return done

    def _apply(self, page: embeddings.Page) -> None:
        self.newer_trunk = page.newer_trunk or self.newer_trunk
        self.dirty = self.dirty or bool(page.keys)
        gone = [self.ids[k] for k in page.keys if k in self.ids]
        if gone:
            self.index.remove_ids(np.asarray(gone, dtype=np.int64))
        add_ids, add_vectors = [], []
        for key, vector, removed in zip(page.keys, page.vectors, page.removed):
            if removed:
                old = self.ids.pop(key, None)
                if old is not None:
                    self.keys[old] = None
                continue
            i = self.ids.get(key)
            if i is None:
                i = self.ids[key] = len(self.keys)
                self.keys.append(key)
            add_ids.append(i)
            add_vectors.append(vector)
        if add_ids:
            self.index.add_with_ids(np.stack(add_vectors).astype(np.float32), np.asarray(add_ids, dtype=np.int64))

    def refresh(
        self, conn: psycopg2.extensions.connection, max_age_s: float, progress: Optional[Progress] = None
    ) -> int:
        """catch_up() unless one ran in the last `max_age_s` seconds; save() when it changed the
        index and the last save is SAVE_EVERY_S old (a rebuild: at once). Returns the rows read."""
        with self._lock:
            if self.checked and time.monotonic() - self.checked < max_age_s:
                return 0
            read = self.catch_up(conn, progress)
        if self.dirty and time.monotonic() - self.saved >= SAVE_EVERY_S:
            self.save()
        return read

    def __len__(self) -> int:
        return len(self.ids)

    # ------------------------------------------------------------ search

    def vector(self, key: str) -> Optional[np.ndarray]:
        with self._lock:
            i = self.ids.get(key)
            return None if i is None else self.index.reconstruct(i)

    def search(self, vector: np.ndarray, k: int, exclude: Optional[str] = None) -> list[Neighbour]:
        """The `k` nearest images to `vector` (most similar first), `exclude` left out."""
        with self._lock:
            if not self.ids:
                return []
            want = min(len(self.ids), k + (exclude is not None))
            scores, ids = self.index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), want)
            out = [
                Neighbour(self.keys[i], float(score))
                for i, score in zip(ids[0].tolist(), scores[0].tolist())
                if i >= 0 and self.keys[i] is not None and self.keys[i] != exclude
            ]
            return out[:k]

    def neighbours_of(self, keys: list[str], k: int, chunk: int = 500) -> dict[str, list[Neighbour]]:
        """Each indexed key's `k` nearest other images, in batched searches of `chunk` keys (the
        lock is let go between them, so searches of others are not held up for long)."""
        out: dict[str, list[Neighbour]] = {}
        for start in range(0, len(keys), chunk):
            with self._lock:
                known = [key for key in keys[start : start + chunk] if key in self.ids]
                if not known:
                    continue
                ids = [self.ids[key] for key in known]
                vectors = np.stack([self.index.reconstruct(i) for i in ids])
                scores, found = self.index.search(vectors, min(len(self.ids), k + 1))
                for key, i, row_ids, row_scores in zip(known, ids, found, scores):
                    out[key] = [
                        Neighbour(self.keys[j], float(score))
                        for j, score in zip(row_ids.tolist(), row_scores.tolist())
                        if j >= 0 and j != i and self.keys[j] is not None
                    ][:k]
        return out

    def keys_with_prefix(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(key for key in self.ids if key.startswith(prefix))

    # ------------------------------------------------------------ on disk

    def save(self) -> None:
        """Write a new snapshot folder, then point `current` at it (an atomic rename), so a
        reader never sees half of one; other snapshot folders (the one replaced, any a crash
        left half written) are removed. The index is copied under the search lock (memory
        only) and written to disk outside it: searches wait for the copy, not the disk."""
        with self._lock:
            data = faiss.serialize_index(self.index)
            keys = json.dumps(self.keys, ensure_ascii=False)
            state = {
                "format": _FORMAT,
                "trunk": self.trunk,
                "since": self.since,
                "count": len(self.ids),
                "trained_on": self.trained_on,
                "database": self.database,
            }
            self.dirty, self.saved = False, time.monotonic()
        with _locked(self.folder):
            snap = self.folder / f"snap-{uuid.uuid4().hex}"
            snap.mkdir()
            data.tofile(str(snap / "index.faiss"))
            (snap / "keys.json").write_text(keys)
            (snap / "state.json").write_text(json.dumps(state))
            link = self.folder / f"current.{os.getpid()}"
            link.unlink(missing_ok=True)
            link.symlink_to(snap.name)
            os.replace(link, self.folder / "current")
            for old in self.folder.glob("snap-*"):
                if old.name != snap.name:
                    shutil.rmtree(old, ignore_errors=True)

    def load(self) -> bool:
        """The saved snapshot, if there is one of this trunk that loads; else False (and the
        index stays empty: the next catch-up reads the whole table)."""
        current = self.folder / "current"
        with self._lock, _locked(self.folder):
            if not current.exists():
                return False
            try:
                state = json.loads((current / "state.json").read_text())
                if state.get("format") != _FORMAT or state.get("trunk") != self.trunk:
                    log.warning("similar-image index in %s is of another trunk or format: rebuilding", self.folder)
                    return False
                keys = json.loads((current / "keys.json").read_text())
                index = faiss.read_index(str(current / "index.faiss"))
            except (OSError, ValueError, RuntimeError) as exc:
                log.warning("similar-image index in %s does not load (%s): rebuilding from the table", self.folder, exc)
                return False
            self.index, self.keys, self.since = index, keys, state["since"]
            self.trained_on, self.database = state.get("trained_on", 0), state.get("database")
            self.ids = {k: i for i, k in enumerate(keys) if k is not None}
            return True


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One process at a time saves or loads a folder (the viewer and a command line may share it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def folder_for(root: Path, trunk: str) -> Path:
    """SIMILAR_INDEX_DIR/<trunk>, the trunk key made a safe folder name."""
    return root / "".join(c if c.isalnum() or c in "._-" else "-" for c in trunk)


def open_index(root: Path, trunk: str) -> SimilarIndex:
    """The trunk's index as saved under `root` (SIMILAR_INDEX_DIR), or an empty one that the
    first refresh() fills from the table."""
    index = SimilarIndex(folder_for(root, trunk), trunk)
    if index.load():
        log.info("similar-image index of %s loaded: %d images", trunk, len(index))
    return index
