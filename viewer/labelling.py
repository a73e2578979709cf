"""The rules of labelling: projects, categories, what a label request may say, and the
accuracy estimate the random queue's labels give (a Wilson score interval, which stays inside
[0, 1] and honest for the few dozen labels a team gives in an afternoon).

A project's queue reads the answers of the project's own model; while that model has no rows
yet (a project made before its first training), it reads the base model's (MODEL_NAME), whose
least certain images are a good first batch too (viewer/label_routes.py).
"""

from __future__ import annotations

import math
from typing import Optional

from common.errors import VisionScalingError
from db.label_queues import QUEUES
from settings import check_model_name

MAX_CATEGORIES = 200
MAX_CATEGORY = 100  # characters
MAX_BULK = 500  # images in one bulk label
HOW = ("key", "bulk", "suggestion", "undo")
LEASE_S = 120.0  # an image handed to a labeller is theirs this long (a page renews by labelling)


class LabelError(VisionScalingError, ValueError):
    """A project, category or label request the rules refuse."""


MAX_KEY_BYTES = 1024  # PostgreSQL indexes the keys of labels and leases: a longer one is no image key
RESERVED = ("projects",)  # /api/label/projects is the list of projects


def check_project_name(name: object) -> str:
    try:
        name = check_model_name(name)  # a project trains the model of the same name
    except ValueError as exc:
        raise LabelError(str(exc)) from None
    if name in RESERVED:
        raise LabelError(f"{name!r} is reserved: choose another name")
    return name


def _utf8(text: str, what: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LabelError(f"{what} is not valid text (a lone surrogate)") from None
    return text


def check_categories(categories: object) -> list[str]:
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise LabelError("categories must be a list of names")
    cleaned = [_utf8(c, "a category").strip() for c in categories]
    if not 2 <= len(cleaned) <= MAX_CATEGORIES:
        raise LabelError(f"a project needs 2 to {MAX_CATEGORIES} categories, got {len(cleaned)}")
    for c in cleaned:
        if not c or len(c) > MAX_CATEGORY or any(ch in c for ch in "\x00\n\r\t/\\") or c in (".", ".."):
            raise LabelError(
                f"category {c[:40]!r}: 1 to {MAX_CATEGORY} characters on one line, no / or \\, not . or .. "
                "(categories are folder names in fit's layout)"
            )
    if len(set(cleaned)) != len(cleaned):
        raise LabelError("the categories repeat a name")
    return cleaned


def check_label(data: object, categories: list[str]) -> tuple[list[str], Optional[str], str, Optional[str]]:
    """(keys, category, how, queue) of a label request; category None takes a label back."""
    if not isinstance(data, dict):
        raise LabelError("send a JSON object")
    keys = data.get("keys")
    if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
        raise LabelError("keys must be a non-empty list of image keys")
    if len(keys) > MAX_BULK:
        raise LabelError(f"at most {MAX_BULK} images in one label")
    if any("\x00" in _utf8(k, "a key") for k in keys):
        raise LabelError("a key contains a NUL character")
    if any(len(k.encode("utf-8")) > MAX_KEY_BYTES for k in keys):
        raise LabelError(f"a key is longer than {MAX_KEY_BYTES} bytes")
    how = data.get("how", "key")
    if how not in HOW:
        raise LabelError(f"how must be one of {', '.join(HOW)}")
    category = data.get("category")
    if category is None and how != "undo":
        raise LabelError("category is missing")
    if category is not None and (not isinstance(category, str) or category not in categories):
        raise LabelError(f"{str(category)[:60]!r} is not a category of this project")
    queue = data.get("queue")
    if queue is not None and queue not in QUEUES:
        raise LabelError(f"queue must be one of {', '.join(QUEUES)}")
    return list(dict.fromkeys(keys)), category, how, queue


def wilson(agree: int, n: int, z: float = 1.96) -> Optional[tuple[float, float]]:
    """The 95% Wilson score interval of a proportion agree/n (None without a sample)."""
    if n == 0:
        return None
    p = agree / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
