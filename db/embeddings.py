"""Image embeddings in PostgreSQL (migration 0009): written with the image's rows, read by the
search index as it catches up and by training.

A vector is 512 float16 values, little-endian, in `bytea`: 1 KiB a row, half of `real[]`, and
faster to write and to read back (benchmarks/embedding_storage.py; figures in
docs/similar.md). Vectors are L2-normalised by the worker, so a dot product is the cosine.

Catching up: every write stamps the row with its transaction id (`txid`). A reader that keeps
the xmin of the snapshot it read with (every transaction still open then has an id at or
above it) and next asks for rows with `txid >= xmin` sees every row committed since, at the
cost of reading a few rows twice (applying one twice does no harm).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np
import psycopg2.extensions
from psycopg2.extras import execute_values

DIM = 512
DTYPE = np.dtype("<f2")


@dataclass(frozen=True)
class Embedding:
    image_key: str  # stored form (common.keys.stored_key), as the rows have it
    trunk: str  # consumer.trunk.trunk_key: vectors of two trunks are not comparable
    vector: np.ndarray  # [512] float, L2-normalised
    etag: Optional[str] = None


def encode(vector: np.ndarray) -> bytes:
    v = np.asarray(vector, dtype=DTYPE)
    if v.shape != (DIM,):
        raise ValueError(f"an embedding has {DIM} values, not the shape {v.shape}")
    return v.tobytes()


def decode(blobs: Iterable[bytes]) -> np.ndarray:
    """bytea values -> [N, 512] float32."""
    data = b"".join(bytes(b) for b in blobs)
    return np.frombuffer(data, dtype=DTYPE).reshape(-1, DIM).astype(np.float32)


_UPSERT = """
INSERT INTO image_embeddings AS e (image_key, trunk, vector, etag)
VALUES %s
ON CONFLICT (image_key) DO UPDATE SET
    trunk = EXCLUDED.trunk, vector = EXCLUDED.vector, etag = EXCLUDED.etag, time = now(),
    deleted_at = NULL, txid = pg_current_xact_id()
"""


def upsert(cur: psycopg2.extensions.cursor, embeddings: Iterable[Embedding]) -> int:
    """Write the batch's embeddings in the caller's transaction: one row per key (a redelivery
    replaces it), the newest transaction's id on it."""
    rows = {e.image_key: (e.image_key, e.trunk, psycopg2.Binary(encode(e.vector)), e.etag) for e in embeddings}
    if rows:
        execute_values(cur, _UPSERT, sorted(rows.values()), page_size=1000)
    return len(rows)


def mark_removed(cur: psycopg2.extensions.cursor, keys: list[str]) -> None:
    """The objects are gone from the bucket: their embeddings leave the search (in the event's
    transaction, db/events.py)."""
    cur.execute(
        "UPDATE image_embeddings SET deleted_at = now(), txid = pg_current_xact_id()"
        " WHERE image_key = ANY(%s) AND deleted_at IS NULL",
        (keys,),
    )


@dataclass(frozen=True)
class Page:
    keys: list[str]
    vectors: np.ndarray  # [len(keys), 512] float32
    removed: list[bool]  # gone from the bucket, or now embedded by another trunk
    newer_trunk: Optional[str] = None  # a live row of another trunk was among them: its name


def changes(
    conn: psycopg2.extensions.connection, trunk: str, since: Optional[int], page: int = 20_000
) -> tuple[Iterator[Page], int, int]:
    """The rows written at or after transaction id `since` (all of `trunk`'s when None), in
    pages, read in one repeatable-read snapshot; with the count of those rows (for a progress
    bar) and the snapshot's xmin, the `since` of the next call. A row now embedded by another
    trunk (the weights changed and the image was sent again) counts as removed for `trunk`'s
    reader. The caller iterates the pages before using the connection again."""
    conn.rollback()
    cur = conn.cursor()
    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the first statement of it
    cur.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    xmin = cur.fetchone()[0]
    if since is None:
        where, params = "trunk = %(trunk)s", {"trunk": trunk}
    else:
        where, params = "txid >= %(since)s::bigint::text::xid8", {"trunk": trunk, "since": since}
    cur.execute(f"SELECT count(*) FROM image_embeddings WHERE {where}", params)
    total = cur.fetchone()[0]
    cur.close()

    def pages() -> Iterator[Page]:
        try:
            with conn.cursor(name="embedding_changes") as named:
                named.itersize = page
                columns = "image_key, vector, deleted_at IS NOT NULL, trunk"
                named.execute(f"SELECT {columns} FROM image_embeddings WHERE {where}", params)
                while rows := named.fetchmany(page):
                    others = [r[3] for r in rows if r[3] != trunk and not r[2]]
                    yield Page(
                        [r[0] for r in rows],
                        decode(r[1] for r in rows),
                        [r[2] or r[3] != trunk for r in rows],
                        others[-1] if others else None,
                    )
        finally:
            conn.rollback()

    return pages(), total, xmin


def vectors_of(conn: psycopg2.extensions.connection, keys: list[str], trunk: str) -> dict[str, np.ndarray]:
    """The stored vectors of `keys` made by `trunk` (keys without one are left out)."""
    out: dict[str, np.ndarray] = {}
    with conn, conn.cursor() as cur:
        for start in range(0, len(keys), 10_000):
            cur.execute(
                "SELECT image_key, vector FROM image_embeddings"
                " WHERE image_key = ANY(%s) AND trunk = %s AND deleted_at IS NULL",
                (keys[start : start + 10_000], trunk),
            )
            rows = cur.fetchall()
            if rows:
                out.update(zip((r[0] for r in rows), decode(r[1] for r in rows)))
    return out


def newest_trunk(conn: psycopg2.extensions.connection) -> Optional[str]:
    """The trunk of the most recently written embedding (what a torch-free reader searches), or
    None when there are none."""
    with conn.cursor() as cur:  # in the caller's transaction (the viewer's read-only one)
        cur.execute("SELECT trunk FROM image_embeddings WHERE deleted_at IS NULL ORDER BY time DESC LIMIT 1")
        row = cur.fetchone()
    return row[0] if row else None


def database_identity(conn: psycopg2.extensions.connection) -> str:
    """Which database this is (the cluster's system identifier and the database's name): a
    saved search index's transaction ids mean nothing in another one, a restored copy included."""
    with conn.cursor() as cur:  # in the caller's transaction
        cur.execute("SELECT system_identifier::text || '/' || current_database() FROM pg_control_system()")
        return cur.fetchone()[0]
