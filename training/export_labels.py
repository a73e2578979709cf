"""python -m training export NAME DIR [--images LOCAL]: the labels given in the viewer for
project NAME as a folder in `fit`'s layout, DIR/<category>/<file>, so they are never locked in:
each file a symbolic link to the photo under LOCAL (the folder that was uploaded) when it is
there, else the photo downloaded from S3_BUCKET. File names are made from the key (safe
characters only, a hash of the key in front, so two keys never share a file)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from training.dataset import DatasetError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(key: str) -> str:
    safe = _UNSAFE.sub("_", key.replace("/", "__")).lstrip(".")[:150] or "image"
    return f"{hashlib.sha256(key.encode()).hexdigest()[:10]}-{safe}"


def local_copy(images: Optional[Path], key: str) -> Optional[Path]:
    """images/key when it is a file inside `images` (a key cannot climb out with '..')."""
    if images is None or "\x00" in key:
        return None
    root = Path(os.path.abspath(images))
    path = Path(os.path.normpath(root / key))  # lexically: links inside the folder are the user's own
    try:
        return path if path.is_relative_to(root) and path != root and path.is_file() else None
    except (OSError, ValueError):
        return None


def export(rows: list[tuple[str, str]], out: Path, images: Optional[Path], fetch: Callable[[str], bytes]) -> dict:
    """Write the folder; returns {"linked", "downloaded", "failed": [(key, reason)]}."""
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty: export into a new folder")
    done = {"linked": 0, "downloaded": 0, "failed": []}
    for key, category in rows:
        folder = out / category
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / file_name(key)
        source = local_copy(images, key)
        if source is not None:
            target.symlink_to(source)
            done["linked"] += 1
            continue
        try:
            target.write_bytes(fetch(key))
            done["downloaded"] += 1
        except Exception as exc:  # noqa: BLE001 - one missing photo is reported, the rest go on
            done["failed"].append((key, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
    return done
