"""How to store a 512-d embedding in PostgreSQL: float16 in `bytea` against `real[]`.

Creates a scratch database next to DATABASE_URL's (dropped at the end), two tables shaped
like image_embeddings (migration 0009) that differ only in the vector's type, and for each:
writes --rows unit vectors in 32-row batches (a worker's batch, execute_values), then reads
them all back into a numpy matrix (what rebuilding the search index does). Reports bytes per
row on disk (table + TOAST + primary key), ms per 32-row batch and seconds to read all, in
random turns so that neither type always runs first. Prints JSON; --out writes it.

    python -m benchmarks.embedding_storage --rows 50000 --out benchmarks/results/embedding_storage.json
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from benchmarks.cpu import model_name as cpu_model
from benchmarks.report import emit
from settings import get_settings

DIM = 32 * 16
_SCRATCH = "vs_bench_embedding_storage"

_TABLE = """
CREATE TABLE {name} (image_key text PRIMARY KEY, trunk text NOT NULL, vector {type} NOT NULL,
                     time timestamptz NOT NULL DEFAULT now())
"""


def _encode(kind: str, v: np.ndarray):
    if kind == "bytea":
        return psycopg2.Binary(v.astype("<f2").tobytes())
    return v.astype(np.float32).tolist()


def _decode(kind: str, rows: list) -> np.ndarray:
    if kind == "bytea":
        return np.frombuffer(b"".join(bytes(r[0]) for r in rows), dtype="<f2").reshape(len(rows), DIM)
    return np.asarray([r[0] for r in rows], dtype=np.float32)


def _write(conn, kind: str, vectors: np.ndarray, batch: int) -> list[float]:
    ms = []
    table = f"emb_{kind}"
    with conn.cursor() as cur:
        for start in range(0, len(vectors), batch):
            rows = [
                (f"bench/{i:09d}.jpg", "squeezenet1_1", _encode(kind, vectors[i]))
                for i in range(start, min(start + batch, len(vectors)))
            ]
            t0 = time.perf_counter()
            execute_values(cur, f"INSERT INTO {table} (image_key, trunk, vector) VALUES %s", rows)
            conn.commit()
            ms.append((time.perf_counter() - t0) * 1000)
    return ms


def _read_all(conn, kind: str) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    with conn.cursor(name=f"read_{kind}") as cur:  # server-side: memory stays flat
        cur.itersize = 10_000
        cur.execute(f"SELECT vector FROM emb_{kind} ORDER BY image_key")
        parts = []
        while rows := cur.fetchmany(10_000):
            parts.append(_decode(kind, rows))
    conn.commit()
    return time.perf_counter() - t0, np.concatenate(parts)


def run(rows: int, batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    # non-negative like the trunk's pooled ReLU output, then L2-normalised
    vectors = np.abs(rng.standard_normal((rows, DIM))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    base = get_settings().database_url
    with closing(psycopg2.connect(base)) as admin:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(_SCRATCH)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_SCRATCH)))
    out: dict[str, dict] = {}
    try:
        with closing(psycopg2.connect(psycopg2.extensions.make_dsn(base, dbname=_SCRATCH))) as conn:
            kinds = {"bytea": "bytea", "real[]": "real[]"}
            with conn, conn.cursor() as cur:
                for kind, pgtype in kinds.items():
                    cur.execute(_TABLE.format(name=f"emb_{kind.strip('[]')}", type=pgtype))
            order = list(kinds)
            random.Random(seed).shuffle(order)
            for kind in order:
                name = kind.strip("[]")
                ms = _write(conn, name, vectors, batch)
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_total_relation_size(%s)", (f"emb_{name}",))
                    size = cur.fetchone()[0]
                conn.commit()
                reads = []
                for _ in range(3):
                    seconds, matrix = _read_all(conn, name)
                    reads.append(seconds)
                error = float(np.abs(matrix - vectors).max())
                out[kind] = {
                    "bytes_per_row": round(size / rows, 1),
                    "write_ms_per_batch_median": round(statistics.median(ms), 3),
                    "write_ms_per_batch_p95": round(float(np.percentile(ms, 95)), 3),
                    "read_all_s_median": round(statistics.median(reads), 3),
                    "read_all_s_runs": [round(r, 3) for r in reads],
                    "max_abs_error": error,
                }
    finally:
        with closing(psycopg2.connect(base)) as admin:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(_SCRATCH)))
    b, r = out["bytea"], out["real[]"]
    return {
        "benchmark": "embedding_storage",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "rows": rows,
        "batch": batch,
        "order": order,
        "results": out,
        "ratios_bytea_over_real": {
            "bytes_per_row": round(b["bytes_per_row"] / r["bytes_per_row"], 3),
            "write_ms_per_batch": round(b["write_ms_per_batch_median"] / r["write_ms_per_batch_median"], 3),
            "read_all_s": round(b["read_all_s_median"] / r["read_all_s_median"], 3),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.embedding_storage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=32, help="rows per transaction (a worker's batch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    emit(run(args.rows, args.batch, args.seed), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
