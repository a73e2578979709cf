"""How a benchmark hands over its figures: JSON on stdout, and the same file where asked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def emit(result: dict, out: Optional[Path]) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")
