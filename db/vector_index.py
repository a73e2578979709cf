"""The faiss indexes behind similar-image search (db/similar.py): exact search over float16
vectors, and an inverted-file index (IVF) whose clusters are trained on a sample of the
table. Sizes and probes chosen with benchmarks/similar_search.py (figures in docs/similar.md)."""

from __future__ import annotations

import math

import faiss
import numpy as np

from db.embeddings import DIM

TRAIN_PER_CLUSTER = 40  # the sample the clusters are trained on, per cluster (faiss asks >= 39)


def clusters_for(n: int) -> int:
    """The IVF's cluster count for n vectors: 2·sqrt(n), between 128 and 8192 (training time
    grows with clusters x sample: 2·sqrt(n) trains 1 M vectors' clusters in minutes on 2 cores)."""
    return max(128, min(8192, int(2 * math.sqrt(n))))


def probes_for(clusters: int) -> int:
    """Clusters a search scans (NPROBE): chosen in benchmarks/similar_search.py."""
    return max(16, clusters // 32)


def exact_index() -> faiss.Index:
    flat = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIDMap2(flat)


def ivf_index(sample: np.ndarray, clusters: int) -> faiss.Index:
    """An empty IVF index whose clusters are trained on `sample` [M, 512] float32."""
    quantizer = faiss.IndexFlatIP(DIM)
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, DIM, clusters, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index.train(sample)
    index.set_direct_map_type(faiss.DirectMap.Hashtable)  # removal and lookup by id
    index.nprobe = probes_for(clusters)
    return index


def gather(parts: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """rows (sorted global row numbers) of the concatenation of parts, without concatenating."""
    bounds = np.cumsum([0] + [len(p) for p in parts])
    out = []
    for j, part in enumerate(parts):
        mine = rows[(rows >= bounds[j]) & (rows < bounds[j + 1])] - bounds[j]
        if len(mine):
            out.append(part[mine])
    return np.concatenate(out)
