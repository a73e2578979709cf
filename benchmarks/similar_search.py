"""Which search for similar images: exact against an inverted-file index (faiss), at 100 k and 1 M.

The vectors: the real embeddings of the dev photos and of their mirrored copies
(consumer/embedding.py: the workers' own trunk), and generated ones around them (a random
mix of two real embeddings, plus noise as large as the real embeddings' own spread per
dimension, kept non-negative like the trunk's pooled ReLU output, unit length), up to
--sizes. The queries: the dev photos re-encoded as JPEG quality 75 at half size (real photos,
not in the index: what a search by photo sends).

For each size: exact search in numpy (float32 matrix in memory, one matrix-vector product and
a partial sort per query: the truth); db/similar.py's exact index (float16, faiss) and its IVF
(clusters as db/similar.py picks them for the size, trained on a sample of TRAIN_PER_CLUSTER per cluster,
float16) at several probe counts, including the one db/similar.py uses: build seconds
(--threads), bytes per vector (the index serialised: what it holds in memory), recall@10
against the truth, and query latency p50/p95 (one query at a time on one thread, as the
viewer and the command line ask). Prints JSON; --out writes it.

    python -m benchmarks.similar_search --sizes 100000,1000000 --out benchmarks/results/similar_search.json
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from benchmarks.cpu import model_name as cpu_model
from benchmarks.report import emit
from settings import Settings


def real_embeddings(settings: Settings) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(the dev photos' and their mirrors' embeddings [2N, 512], the re-encoded half-size
    copies' [N, 512] (the queries), the photos' names)."""
    from consumer.embedding import Embedder

    paths = sorted((settings.shared_dir / "images" / "dev").glob("*.JPEG"))
    embedder = Embedder(settings)
    originals, mirrors, queries = [], [], []
    for p in paths:
        data = p.read_bytes()
        img = Image.open(io.BytesIO(data)).convert("RGB")
        originals.append(data)
        mirrors.append(_jpeg(ImageOps.mirror(img), 95))
        queries.append(_jpeg(img.resize((max(1, img.width // 2), max(1, img.height // 2))), 75))
    vectors = [embedder.embed(group) for group in (originals, mirrors, queries)]
    for group in vectors:
        bad = [v for v in group if not isinstance(v, np.ndarray)]
        if bad:
            raise SystemExit(f"a dev photo did not embed: {bad[0]}")
    base = np.concatenate([np.stack(vectors[0]), np.stack(vectors[1])])
    return base, np.stack(vectors[2]), [p.name for p in paths]


def _jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


def generated(real: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n vectors around the real ones (see the module's docstring), in float32, unit length."""
    rng = np.random.default_rng(seed)
    spread = real.std(axis=0)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        a, b = rng.integers(0, len(real), m), rng.integers(0, len(real), m)
        w = rng.random((m, 1), dtype=np.float32)
        v = w * real[a] + (1 - w) * real[b] + rng.standard_normal((m, real.shape[1]), dtype=np.float32) * spread
        np.maximum(v, 0, out=v)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start : start + m] = v
    return out


def exact_top(matrix: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    """The true top-k ids per query, and each query's time in ms."""
    ids, times = np.empty((len(queries), k), dtype=np.int64), []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        scores = matrix @ q
        top = np.argpartition(-scores, k)[:k]
        ids[i] = top[np.argsort(-scores[top])]
        times.append((time.perf_counter() - t) * 1000)
    return ids, times


def _latency(times: list[float]) -> dict:
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p95_ms": round(float(np.percentile(times, 95)), 3)}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


def _timed_search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, list[float]]:
    found, times = np.empty((len(queries), k), dtype=np.int64), []
    for i, q in enumerate(queries):
        t = time.perf_counter()
        _, ids = index.search(q.reshape(1, -1), k)
        times.append((time.perf_counter() - t) * 1000)
        found[i] = ids[0]
    return found, times


def _measure(index, sets: dict, truths: dict, k: int) -> dict:
    """Recall@10 and latency per query set (one query at a time, one thread)."""
    out = {}
    for name, queries in sets.items():
        found, times = _timed_search(index, queries, k)
        out[name] = {"recall_at_10": round(recall(found, truths[name]), 4), **_latency(times)}
    return out


def run_size(base: np.ndarray, queries: np.ndarray, size: int, k: int, threads: int, seed: int) -> dict:
    import faiss

    from db import vector_index as similar

    matrix = np.concatenate([base, generated(base, size - len(base), seed)])
    # two query sets: the photos' re-encoded half-size copies, and generated vectors not in
    # the index (harder: their neighbours are spread over more clusters)
    sets = {"photo_copies": queries, "generated": generated(base, len(queries), seed + 1)}
    truths, numpy_ms = {}, []
    for name, qs in sets.items():
        truths[name], ms = exact_top(matrix, qs, k)
        numpy_ms += ms
    # the nearest neighbour of a photo's re-encoded half-size copy is the photo or its mirror
    n, first = len(queries), truths["photo_copies"][:, 0]
    own = float(np.mean((first == np.arange(n)) | (first == np.arange(n) + n)))
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    exact = similar.exact_index()
    exact.add_with_ids(matrix, np.arange(size, dtype=np.int64))
    exact_build = time.perf_counter() - t
    faiss.omp_set_num_threads(1)
    out = {
        "vectors": size,
        "copy_finds_its_photo_first_exact": round(own, 4),
        "numpy_exact_f32": {**_latency(numpy_ms), "bytes_per_vector": matrix.itemsize * matrix.shape[1]},
        "exact_f16": {
            "build_s": round(exact_build, 1),
            "bytes_per_vector": round(faiss.serialize_index(exact).nbytes / size),
            **_measure(exact, sets, truths, k),
        },
    }
    del exact
    print(f"{size}: {out}", file=sys.stderr, flush=True)
    faiss.omp_set_num_threads(threads)
    clusters = similar.clusters_for(size)
    t = time.perf_counter()
    sample = min(size, similar.TRAIN_PER_CLUSTER * clusters)
    index = similar.ivf_index(matrix[np.sort(np.random.default_rng(0).choice(size, sample, replace=False))], clusters)
    train_s = time.perf_counter() - t
    index.add_with_ids(matrix, np.arange(size, dtype=np.int64))
    build_s = time.perf_counter() - t
    ivf = {
        "clusters": clusters,
        "train_s": round(train_s, 1),
        "build_s": round(build_s, 1),
        "bytes_per_vector": round(faiss.serialize_index(index).nbytes / size),
        "product_probes": similar.probes_for(clusters),
        "by_probes": {},
    }
    faiss.omp_set_num_threads(1)
    for probes in sorted({4, 8, 16, 32, 64, 128, similar.probes_for(clusters)}):
        index.nprobe = probes
        ivf["by_probes"][probes] = _measure(index, sets, truths, k)
    out["ivf_f16"] = ivf
    print(f"{size}: ivf {ivf}", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.similar_search",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated vector counts")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="for building (searches use 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    settings = Settings()
    t = time.perf_counter()
    base, queries, _ = real_embeddings(settings)
    embed_s = time.perf_counter() - t
    sizes = [int(s) for s in args.sizes.split(",")]
    result = {
        "benchmark": "similar_search",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count()},
        "real_vectors": len(base),
        "queries": len(queries),
        "embed_real_s": round(embed_s, 1),
        "k": args.k,
        "build_threads": args.threads,
        "sizes": [run_size(base, queries, n, args.k, args.threads, args.seed) for n in sizes],
    }
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
