"""python -m consumer.similar KEY|FILE [--k 12] [--rebuild]

The images most like one already classified (an image KEY of the bucket) or like a photo on
this machine (a FILE, embedded here exactly as the workers embed), from the stored embeddings
(db/similar.py). One JSON object per line, most similar first, like consumer.classify:
  {"image_key": ..., "score": cosine, "category": MODEL_NAME's answer or null}
A FILE that exists is a file; anything else is a key. The index is read from
SIMILAR_INDEX_DIR and caught up with the table first (a progress bar on a terminal while it
builds); --rebuild reads the whole table again. Exit status 1 when the key has no embedding
or the file is not a photo it can read, 2 when a service or the model is not there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import psycopg2
from tqdm import tqdm

from common.errors import ImageError, VisionScalingError
from common.keys import stored_key
from db import embeddings
from db.connection import connect
from db.queries import answers
from db.similar import SimilarIndex, folder_for, open_index
from settings import Settings, get_settings


class Refused(VisionScalingError):
    """What the user asked for cannot be answered (one line, exit 1)."""


def _query(settings: Settings, target: str) -> tuple[Optional[np.ndarray], Optional[str], str]:
    """(the vector of a FILE, or None for a key; the key to leave out; the trunk to search)."""
    path = Path(target)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # too long for a path, or a NUL in it: a key, then
        is_file = False
    if not is_file:
        return None, stored_key(target), ""
    from consumer.embedding import Embedder

    embedder = Embedder(settings)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Refused(f"{target}: unreadable: {exc.strerror or exc}") from exc
    (vector,) = embedder.embed([data])
    if isinstance(vector, ImageError):
        raise Refused(f"{target}: {vector}")
    return vector, None, embedder.key


def similar(settings: Settings, target: str, k: int, rebuild: bool = False) -> list[dict]:
    vector, key, trunk = _query(settings, target)
    conn = connect(settings)
    try:
        trunk = trunk or embeddings.newest_trunk(conn) or ""
        if not trunk:
            raise Refused("no image has an embedding yet: the workers store one per image (EMBEDDINGS=true)")
        if rebuild:  # a fresh index, not the saved one; its save replaces the saved one
            index = SimilarIndex(folder_for(settings.similar_index_path, trunk), trunk)
        else:
            index = open_index(settings.similar_index_path, trunk)
        _refresh(index, conn)
        if not len(index):
            raise Refused(f"no image has an embedding made by {trunk} yet: nothing to compare with")
        if vector is None:
            vector = index.vector(key)
            if vector is None:
                shown = repr(target) if len(target) <= 200 else repr(target[:200]) + "…"
                raise Refused(f"{shown} has no embedding: not classified yet, removed, or not a key of the bucket")
        found = index.search(vector, k, exclude=key)
        known = answers(conn, [n.image_key for n in found], settings.model_name)
    finally:
        conn.close()
    return [{**n.as_dict(), "category": known.get(n.image_key, (None,))[0]} for n in found]


def _refresh(index: SimilarIndex, conn) -> None:
    first = not len(index) and index.since is None
    with tqdm(unit="img", desc="similar-image index", disable=not (first and sys.stderr.isatty())) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        index.refresh(conn, 0, progress)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m consumer.similar", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("target", metavar="KEY|FILE", help="an image key of the bucket, or a photo file")
    ap.add_argument("--k", type=int, default=12, help="how many images (default 12)")
    ap.add_argument("--rebuild", action="store_true", help="read the whole table again instead of the saved index")
    args = ap.parse_args(argv)
    if not 1 <= args.k <= 1000:
        ap.error("--k must be between 1 and 1000")
    from consumer.weights import WeightsError

    settings = get_settings()
    try:
        found = similar(settings, args.target, args.k, args.rebuild)
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except WeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except psycopg2.Error as exc:
        print(f"error: PostgreSQL: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except OSError as exc:  # the index folder: not writable, a full disk
        print(f"error: the similar-image index in {settings.similar_index_path}: {exc}", file=sys.stderr)
        return 2
    for row in found:
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    from common import cli

    cli.run(main)
