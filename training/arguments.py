"""argparse types of python -m training: each argument is checked as it is parsed, so a value
that cannot work is a usage error (exit 2, one line) before any file is read or model loaded,
never a traceback after the head has trained."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Optional

BASE_MODEL = "squeezenet1_1"  # what fit builds on
FIRE_MODULES = 8  # in torchvision's squeezenet1_1 (a test counts them): the most --unfreeze can take
MAX_SEED = 2**32 - 1  # numpy's seeds are 0 .. 2**32 - 1


def model_name(text: str) -> str:
    """A model name by settings.check_model_name, the rule MODEL_NAME follows."""
    from settings import check_model_name

    try:
        return check_model_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def new_model_name(text: str) -> str:
    """fit --name: a model name that is not a built-in model's."""
    from settings import BUILTIN_MODELS

    name = model_name(text)
    if name in BUILTIN_MODELS:
        raise argparse.ArgumentTypeError(f"{name} is a built-in model's name; choose another")
    return name


def whole_number(low: int, high: Optional[int] = None) -> Callable[[str], int]:
    """A type for a whole number from `low` to `high` (both included; no `high`: no limit)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(
                f"{value} is not from {low} to {high}" if high else f"{value} is below {low}"
            )
        return value

    return parse


def fraction(text: str) -> float:
    """A number strictly between 0 and 1 (--val-fraction: both sides need images)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0 < value < 1):
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (both excluded)")
    return value


def report_dir(text: str) -> Path:
    """--report-dir: a folder, or a path where one can be made (not an existing file), checked
    now rather than after the version is registered."""
    path = Path(text)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise argparse.ArgumentTypeError(f"{p} is a file, not a folder")
    return path
